#!/usr/bin/env bash
# The layers of docs/architecture.md, held: each library imports only what it may, and only the
# executable writes to stderr or names exit codes. Prints what breaks a rule; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# module: the Tether modules it may import
declare -A allowed=(
  [TetherCore]=""
  [TetherState]=""
  [TetherRuntime]="CTetherRuntime"
  [TetherSystem]="CSeccomp TetherCore TetherRuntime"
  [TetherClient]="TetherCore TetherState TetherRuntime"
  [TetherSupervisor]="TetherCore TetherSystem TetherClient TetherRuntime"
  [TetherAuthority]="TetherCore TetherState"
)
for module in "${!allowed[@]}"; do
  for file in $(find "Sources/$module" -name '*.swift'); do
    while read -r imported; do
      case " ${allowed[$module]} " in
        *" $imported "*) ;;
        *) echo "$file: $module may not import $imported (docs/architecture.md)"; status=1 ;;
      esac
    done < <(grep -hoE '^(@_exported )?import (Tether[A-Za-z]*|C[A-Z][A-Za-z]*)' "$file" | awk '{print $NF}')
  done
done
# Only the executable writes to stderr and picks exit codes (a log handler writes logs).
if grep -rnE 'FileHandle\.standardError|TetherExit\.[a-z]+|\bexit\(' Sources --include='*.swift' \
     | grep -vE '^Sources/tether/|^Sources/TetherCore/TetherExit\.swift|^Sources/TetherSystem/JournalLogHandler\.swift'; then
  echo "above: stderr or an exit code outside Sources/tether (docs/architecture.md)"; status=1
fi
exit $status
