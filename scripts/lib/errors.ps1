# Dot-sourced by the PowerShell scripts in scripts/, after they set $PROG and before they run: the
# one error style they share, "<script name>: <message>" on stderr, exit 1 for a failure, 2 for bad
# usage (after the script's Get-Usage). Port of scripts/lib/errors.sh: change both together.

# bash: die. Print an error and exit 1.
function Exit-WithError([string]$Message) {
  [Console]::Error.WriteLine("${PROG}: $Message")
  exit 1
}

# bash: usage_error. Say what was wrong, then the usage, on stderr; exit 2.
function Exit-WithUsageError([string]$Message) {
  [Console]::Error.WriteLine("${PROG}: $Message")
  [Console]::Error.WriteLine((Get-Usage))
  exit 2
}
