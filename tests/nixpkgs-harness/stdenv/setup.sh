# The harness's stand-in for nixpkgs' stdenv setup, sourced by every builder (and again by the
# customisation layer's fakeroot shell). It gives a build what dockerTools' builders rely on:
# `set -o pipefail`, SOURCE_DATE_EPOCH, the outputs of structured-attrs builds as variables,
# PATH from nativeBuildInputs (and their setup hooks) before the base tools, runHook and
# genericBuild (buildCommand, or buildPhase then installPhase). The first line, naming the base
# tools' store path, is written in front of this file when the stdenv is built.

set -o pipefail

# nixpkgs' builds run in a sandbox without /etc/localtime; this one sees the host's.
export TZ=UTC
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}

# A structured-attrs build gets its outputs in an associative array; nixpkgs' setup also sets
# one variable per output, which auto-layer.nix relies on (`> $out`).
if [[ "$(declare -p outputs 2> /dev/null)" == "declare -A"* ]]; then
  for __output in "${!outputs[@]}"; do
    export "$__output=${outputs[$__output]}"
  done
fi

# nativeBuildInputs is a bash array in a structured-attrs build and a string otherwise; both
# expand to the list of paths here.
__harness_path=
__harness_hooks=()
for __input in ${nativeBuildInputs[@]:-} ${buildInputs[@]:-}; do
  if [ -d "$__input/bin" ]; then
    __harness_path=${__harness_path:+$__harness_path:}$__input/bin
  fi
  if [ -f "$__input/nix-support/setup-hook" ]; then
    __harness_hooks+=("$__input/nix-support/setup-hook")
  fi
done
export PATH=${__harness_path:+$__harness_path:}$harness_base_tools/bin
for __hook in "${__harness_hooks[@]}"; do
  source "$__hook"
done
unset __input __hook __output __harness_path __harness_hooks

runHook() {
  local hook=$1
  if [ -n "${!hook:-}" ]; then
    eval "${!hook}"
  fi
}

genericBuild() {
  if [ -n "${buildCommandPath:-}" ]; then
    eval "$(< "$buildCommandPath")"
    return
  fi
  if [ -n "${buildCommand:-}" ]; then
    eval "$buildCommand"
    return
  fi
  if [ -z "${dontUnpack:-}" ]; then
    echo "harness stdenv: unpacking sources is not supported (set dontUnpack)" >&2
    return 1
  fi
  local phase
  for phase in buildPhase installPhase; do
    if [ -z "${!phase:-}" ]; then
      echo "harness stdenv: $phase is not set" >&2
      return 1
    fi
    eval "${!phase}"
  done
}
