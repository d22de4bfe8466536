# The firmware's version: the one place it is set. smartserver-node and script/release
# read it from this file (Python's ast, no regex); the node reports it in its info.
VERSION = "0.1.0"
