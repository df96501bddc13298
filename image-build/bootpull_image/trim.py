"""What the image leaves out, and why: one table, read by the build and by docs/image.md.

:func:`reason_to_drop` is pure: given a path inside the image tree it returns why the
path is left out, or ``None`` to keep it. The build records every removal with its
reason in the manifest (``removed``), so the size budget can be audited.
"""

from __future__ import annotations

import fnmatch

STDLIB = "usr/lib/python3.11/"
SITE = "usr/lib/python3/dist-packages/"

#: stdlib packages/modules the node never imports (checked by the build's smoke test)
STDLIB_UNUSED: dict[str, str] = {
    "test": "CPython's own test suite",
    "idlelib": "the IDLE editor",
    "tkinter": "GUI toolkit (no display in the image)",
    "turtle.py": "GUI turtle graphics",
    "turtledemo": "GUI demos",
    "ensurepip": "pip bootstrap (nothing is installed at run time)",
    "venv": "virtual environments",
    "lib2to3": "Python 2 converter",
    "pydoc_data": "help texts for pydoc",
    "pydoc.py": "interactive documentation",
    "distutils": "package building",
    "sqlite3": "no database on the node (its C library is not shipped either)",
    "dbm": "no database on the node",
    "curses": "no terminal UI (console output is plain lines)",
    "xmlrpc": "no XML-RPC",
    "wsgiref": "no WSGI server on the node",
    "msilib": "Windows installer files",
    "__phello__": "frozen-module demo",
    "config-3.11-x86_64-linux-gnu": "C build configuration for extension builds",
    "unittest": "test framework (the node runs no tests)",
    "doctest.py": "test framework",
    "pdb.py": "interactive debugger (no one at the console to drive it)",
    "bdb.py": "debugger framework (used by pdb only)",
    "cProfile.py": "profilers",
    "profile.py": "profilers",
    "pstats.py": "profilers",
    "pickletools.py": "pickle disassembler",
    "_pyio.py": "pure-Python io (the C io module is built in)",
    "imaplib.py": "mail and news protocols the node never speaks",
    "poplib.py": "mail and news protocols the node never speaks",
    "smtplib.py": "mail and news protocols the node never speaks",
    "smtpd.py": "mail and news protocols the node never speaks",
    "nntplib.py": "mail and news protocols the node never speaks",
    "ftplib.py": "FTP and telnet (the node speaks HTTP(S) only)",
    "telnetlib.py": "FTP and telnet (the node speaks HTTP(S) only)",
    "aifc.py": "audio file formats",
    "sunau.py": "audio file formats",
    "wave.py": "audio file formats",
    "sndhdr.py": "audio file formats",
    "imghdr.py": "image file formats",
    "mailcap.py": "desktop MIME handlers",
    "cgitb.py": "CGI tracebacks (no CGI)",
    "xdrlib.py": "Sun XDR encoding",
    "tabnanny.py": "developer tools (source checkers, module finders, zipapp builder)",
    "pyclbr.py": "developer tools (source checkers, module finders, zipapp builder)",
    "modulefinder.py": "developer tools (source checkers, module finders, zipapp builder)",
    "zipapp.py": "developer tools (source checkers, module finders, zipapp builder)",
    "xml/dom*": "XML DOM and SAX (the node reads JSON, TOML and git objects; no XML)",
    "xml/sax*": "XML DOM and SAX (the node reads JSON, TOML and git objects; no XML)",
    "asyncio/windows_*": "Windows support",
    "asyncio/proactor_events.py": "Windows support (the proactor event loop)",
    "webbrowser.py": "no browser on the node",
    "asyncore.py": "deprecated socket frameworks (asyncio stays)",
    "asynchat.py": "deprecated socket frameworks (asyncio stays)",
    "cmd.py": "interactive command interpreters (used by pdb only)",
    "mailbox.py": "Unix mailboxes (read only by dulwich's mbox module, dropped too)",
    "lib-dynload/_lsprof*": "profilers",
    "lib-dynload/_test*": "C test modules",
    "lib-dynload/_xx*": "C test modules",
    "lib-dynload/xxlimited*": "C test modules",
    "lib-dynload/_ctypes_test*": "C test modules",
    "lib-dynload/audioop*": "audio",
    "lib-dynload/ossaudiodev*": "audio",
    "lib-dynload/nis*": "NIS directory service",
    "lib-dynload/_curses*": "curses (no terminal UI)",
    "lib-dynload/readline*": "interactive line editing (its library is not shipped)",
    "lib-dynload/_dbm*": "dbm (its library is not shipped)",
    "lib-dynload/_sqlite3*": "sqlite3 (its library is not shipped)",
    "lib-dynload/_bz2*": "bzip2 (its library is not shipped; nothing reads .bz2)",
    "lib-dynload/_lzma*": "xz (its library is not shipped; nothing reads .xz)",
    "lib-dynload/_crypt*": "crypt(3) password hashing (its library is not shipped)",
    "lib-dynload/_decimal*": "C decimal (libmpdec is not shipped; _pydecimal stays)",
    "lib-dynload/_uuid*": "libuuid is not shipped; uuid falls back to pure Python",
    "lib-dynload/_codecs_*": "CJK codecs",
    "lib-dynload/_multibytecodec*": "CJK codecs",
}

#: the encodings the node can meet: UTF-8/ASCII/Latin-1 text, IDNA host names, the
#: escapes Python uses internally, and the codecs modules look up by name
ENCODINGS_KEPT = frozenset({
    "__init__", "aliases", "ascii", "latin_1", "utf_8", "utf_8_sig", "utf_16", "utf_16_le",
    "utf_16_be", "utf_32", "utf_32_le", "utf_32_be", "idna", "punycode", "raw_unicode_escape",
    "unicode_escape", "charmap", "cp437", "cp1252", "iso8859_1", "hex_codec", "base64_codec",
    "undefined",
})

#: scapy layers for protocols the node never speaks. The node imports the layers it
#: uses (scapy.layers.dhcp and what that pulls in), never scapy.all, which would log
#: "can't import layer" for each of these.
SCAPY_LAYERS_DROPPED = (
    "kerberos", "smb", "smb2", "smbclient", "smbserver", "dcerpc", "ldap", "ntlm", "spnego",
    "gssapi", "netflow", "x509", "bluetooth", "bluetooth4LE", "dot11", "dot15d4", "zigbee",
    "sixlowpan", "lorawan", "http", "radius", "ipsec", "isakmp", "msnrpc", "mspac",
)
#: scapy layers that ``scapy.layers.dhcp`` and the node's other imports never load:
#: protocols the node never speaks, and DNS/LLMNR (the node resolves with dnspython)
SCAPY_LAYERS_UNLOADED = (
    "can", "clns", "dhcp6", "dns", "eap", "gprs", "hsrp", "igmp", "ir", "l2tp", "llmnr",
    "lltd", "mgcp", "mobileip", "ms_nrtp", "netbios", "ntp", "pflog", "ppi", "ppp", "pptp",
    "quic", "rip", "rtp", "sctp", "skinny", "snmp", "ssh", "tftp", "tpm", "tuntap", "usb",
    "vrrp", "vxlan",
)
SCAPY_UNLOADED_REASON = ("scapy layers the node never loads (it imports scapy.layers.dhcp "
                         "and what that pulls in, and resolves names with dnspython)")
#: dulwich modules for git features the node's fetch (dulwich.client, repo, objects)
#: never reaches: history rewriting, mail patches, stashes, notes, signatures, bitmaps
DULWICH_UNUSED = (
    "rebase", "am", "mbox", "range_diff", "rerere", "filter_branch", "fastexport", "stash",
    "notes", "diffstat", "annotate", "mailmap", "bitmap", "gc", "maintenance", "signature",
)
SCAPY_LAYERS_REASON = ("scapy layers for protocols the node never speaks (SMB, Kerberos, "
                       "LDAP, NTLM, DCE/RPC, 802.11, Bluetooth, HTTP, NetFlow, ...)")

#: patterns (fnmatch, on the path under the package root) dropped from every
#: dependency installed into the image
SITE_UNUSED: dict[str, str] = {
    "*/tests/*": "test suites",
    "*/tests": "test suites",
    "*/test/*": "test suites",
    "*/testing/*": "test helpers",
    "*.pyi": "type stubs (read by type checkers, not by Python)",
    "*.c": "C sources (the compiled extension is kept)",
    "*.h": "C headers",
    "*.pyx": "Cython sources",
    "bin/*": "console scripts (the node runs 'bootpull' only)",
    "bin": "console scripts",
    "scapy/contrib/*": "scapy's optional protocol layers (DHCP/Ethernet/IP/UDP are in "
    "scapy.layers)",
    "scapy/contrib": "scapy's optional protocol layers",
    "scapy/tools/*": "scapy's interactive tools",
    "scapy/modules/krack/*": "WPA attack module",
    "scapy/layers/tls/*": "scapy's TLS dissector (the node speaks TLS through ssl)",
    "scapy/layers/tls": "scapy's TLS dissector",
    "scapy/layers/msrpce": "Windows RPC layers",
    "scapy/layers/msrpce/*": "Windows RPC layers",
    "scapy/layers/windows": "Windows protocol layers",
    "scapy/layers/windows/*": "Windows protocol layers",
    **{f"scapy/layers/{name}.py": SCAPY_LAYERS_REASON for name in SCAPY_LAYERS_DROPPED},
    **{f"scapy/layers/{name}.py": SCAPY_UNLOADED_REASON for name in SCAPY_LAYERS_UNLOADED},
    "scapy/cbor": "scapy's CBOR codec (no layer the node loads uses it)",
    "scapy/cbor/*": "scapy's CBOR codec (no layer the node loads uses it)",
    "scapy/cborpacket.py": "scapy's CBOR codec (no layer the node loads uses it)",
    "scapy/arch/libpcap.py": "libpcap, WinPcap and Solaris support (the node uses Linux "
    "packet sockets)",
    "scapy/libs/winpcapy.py": "libpcap, WinPcap and Solaris support",
    "scapy/arch/solaris.py": "libpcap, WinPcap and Solaris support",
    "scapy/modules/voip.py": "scapy's VoIP tools",
    **{f"dulwich/{name}.py": "dulwich features the node's fetch never reaches (history "
       "rewriting, mail patches, stashes, notes, signatures, bitmaps, gc)"
       for name in DULWICH_UNUSED},
    "*/test_data/*": "test data",
    "*/test_data": "test data",
    "scapy/arch/windows/*": "Windows support",
    "scapy/arch/bpf/*": "BSD/macOS support",
    "dulwich/contrib/*": "dulwich extras (swift, paramiko, ...)",
    "dulwich/cli.py": "dulwich's command-line tool",
    "dulwich/porcelain/*": "dulwich's git-command layer (the node calls dulwich.client and "
    "the object store directly; only dulwich's maintenance module, dropped too, imports it)",
    "dulwich/porcelain": "dulwich's git-command layer",
    "*.dist-info/sboms/*": "a wheel's software bill of materials (the manifest lists every "
    "package with its version)",
    "*.dist-info/sboms": "a wheel's software bill of materials",
    "pycparser/*": "cffi's C parser, needed only to build cffi modules, never at run time",
    "pycparser": "cffi's C parser, needed only at build time",
    "cffi/*": "cffi's Python side builds FFI modules; at run time cryptography needs "
    "only the _cffi_backend extension, which stays",
    "cffi": "cffi's Python side, needed only to build FFI modules",
    "scapy/modules/ticketer.py": "scapy's Kerberos/LDAP/fingerprinting tools (their "
    "layers are dropped too)",
    "scapy/modules/ldaphero.py": "scapy's Kerberos/LDAP/fingerprinting tools",
    "scapy/modules/p0f.py": "scapy's Kerberos/LDAP/fingerprinting tools",
    "scapy/modules/p0fv2.py": "scapy's Kerberos/LDAP/fingerprinting tools",
    "scapy/modules/nmap.py": "scapy's Kerberos/LDAP/fingerprinting tools",
    "scapy/libs/rfc3961.py": "Kerberos cryptography (the Kerberos layers are dropped)",
    "dulwich/_diff_tree.*.so": "dulwich's C accelerator for tree diffs (the node never "
    "diffs trees; dulwich falls back to its Python code)",
    "dulwich/web.py": "dulwich's git servers (the node is a client only)",
    "dulwich/lfs_server.py": "dulwich's git servers (the node is a client only)",
    "dulwich/aiohttp/*": "dulwich's git servers (the node is a client only)",
    "dulwich/aiohttp": "dulwich's git servers (the node is a client only)",
    "dulwich/cloud/*": "dulwich's cloud object stores",
    "dulwich/cloud": "dulwich's cloud object stores",
    "serial/tools/miniterm.py": "pyserial's terminal program",
    "dns/dnssecalgs": "dnspython's DNSSEC, zones and async resolver (the node sends "
    "plain queries with dns.resolver)",
    "dns/dnssecalgs/*": "dnspython's DNSSEC, zones and async resolver",
    **{f"dns/{name}.py": "dnspython's DNSSEC, zones and async resolver"
       for name in ("dnssec", "zone", "zonefile", "btree", "btreezone", "versioned",
                    "asyncresolver", "_asyncio_backend", "_trio_backend", "win32util")},
    "urllib3/contrib/emscripten": "urllib3's browser (Emscripten), pyOpenSSL and SOCKS "
    "back ends",
    "urllib3/contrib/emscripten/*": "urllib3's browser (Emscripten), pyOpenSSL and SOCKS "
    "back ends",
    "urllib3/contrib/pyopenssl.py": "urllib3's browser (Emscripten), pyOpenSSL and SOCKS "
    "back ends",
    "urllib3/contrib/socks.py": "urllib3's browser (Emscripten), pyOpenSSL and SOCKS "
    "back ends",
    "serial/serialwin32.py": "pyserial's Windows, Java and .NET back ends",
    "serial/win32.py": "pyserial's Windows, Java and .NET back ends",
    "serial/serialjava.py": "pyserial's Windows, Java and .NET back ends",
    "serial/serialcli.py": "pyserial's Windows, Java and .NET back ends",
    "serial/tools/list_ports_windows.py": "pyserial's Windows, Java and .NET back ends",
    "serial/tools/list_ports_osx.py": "pyserial's macOS port lister",
}

#: per-file: docs and licence texts go; the manifest keeps each package's version
DOC_PATTERNS = ("*.md", "*.rst", "*.txt")


def reason_to_drop(path: str) -> str | None:
    """Why ``path`` (relative to the image root, ``/``-separated) is left out, or None."""
    if path.startswith(STDLIB):
        rel = path[len(STDLIB):]
        top = rel.split("/", 1)[0]
        if top in STDLIB_UNUSED:
            return STDLIB_UNUSED[top]
        for pattern, reason in STDLIB_UNUSED.items():
            if "*" in pattern and fnmatch.fnmatchcase(rel, pattern):
                return reason
        if rel.startswith("encodings/") and rel.endswith(".py"):
            name = rel[len("encodings/"):-3]
            if "/" not in name and name not in ENCODINGS_KEPT:
                return "encodings the node never meets (kept: UTF-8/16/32, ASCII, Latin-1, IDNA)"
        if "/tests/" in rel or "/test/" in rel or rel.endswith("/tests"):
            return "test suites"
        return None
    if path.startswith(SITE):
        rel = path[len(SITE):]
        if rel.split("/", 1)[0].endswith(".dist-info") and rel.endswith(("/RECORD",
                                                                          "/INSTALLER")):
            return "pip's install bookkeeping"
        for pattern, reason in SITE_UNUSED.items():
            if fnmatch.fnmatchcase(rel, pattern):
                return reason
        if fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], "*.dist-info"):
            return None
        if "/" in rel and any(fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], p)
                              for p in DOC_PATTERNS) and ".dist-info/" not in rel:
            return "documentation"
        return None
    if path.startswith(("usr/share/doc", "usr/share/man", "usr/share/lintian",
                        "usr/share/locale", "usr/share/info", "usr/share/bug")):
        return "documentation, manual pages and translations"
    return None
