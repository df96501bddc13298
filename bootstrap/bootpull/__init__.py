"""bootpull's node agent: the code that ships in the boot image.

This package imports only the standard library and the node's own dependencies
(dulwich, dnspython, scapy, pyserial, urllib3, cryptography, tuf). The admin tools,
the home base and the lab import from it; it never imports from them.
"""

__version__ = "0.1.0"
