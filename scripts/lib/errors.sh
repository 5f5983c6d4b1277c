# Sourced by the bash scripts in scripts/, after they set PROG and before they run: the one error
# style they share, "<script name>: <message>" on stderr, exit 1 for a failure, 2 for bad usage
# (after the script's usage). scripts/lib/errors.ps1 is its PowerShell port: change both together.
# shellcheck shell=bash disable=SC2154  # PROG (and usage) belong to the script that sources this

# Print an error and exit 1.
die() {
  echo "${PROG}: $*" >&2
  exit 1
}

# Say what was wrong, then the usage, on stderr; exit 2.
usage_error() {
  echo "${PROG}: $*" >&2
  usage >&2
  exit 2
}
