#!/bin/sh
# docs/patterns.md is generated from the patterns' descriptors: fail when it is out of date.
# Usage: check-patterns-doc.sh OSMOSIS SRCDIR   (regenerate: osmosis patterns --markdown >docs/patterns.md)
set -eu
"$1" patterns --markdown | diff -u "$2/docs/patterns.md" - && echo "docs/patterns.md is up to date"
