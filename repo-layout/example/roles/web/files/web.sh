#!/bin/sh
# The web role's entry point: serve the status page with the Python standard library.
# BOOTPULL_VAR_PORT (default 8080) and BOOTPULL_VAR_LISTEN (default 0.0.0.0) set where.
exec python3 ./web.py
