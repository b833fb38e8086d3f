#!/bin/sh
# Fail if any C file in the repository is not formatted as .clang-format says.
set -eu
cd "$1"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src tests bench demo -name '*.[ch]')
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
