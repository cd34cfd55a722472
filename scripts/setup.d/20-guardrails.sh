#!/usr/bin/env bash
# Guardrails (issue 5): the morphological dictionary for PII detection. Idempotent.
#   1. apt-get install mecab-ipadic (Debian's IPADIC sources, EUC-JP)       — skipped when present
#   2. iconv the sources to UTF-8 under ~/.cache/anshin/guardrails/ipadic-src
#   3. compile them with vibrato (`anshin-guardrails build-dict`) into
#      ~/.cache/anshin/guardrails/ipadic/{system.dic,names-romaji.tsv}       (override: ANSHIN_GUARDRAILS_DICT)
# Nothing is downloaded from anywhere but the Debian archive and the crate registry.
set -euo pipefail
source "$(dirname "$0")/../env.sh"

step() { echo "  [guardrails] $*"; }
fail() { echo "  [guardrails] FAILED at step: $*" >&2; exit 1; }

ipadic_src=/usr/share/mecab/dic/ipadic
work="$ANSHIN_CACHE/guardrails"
utf8="$work/ipadic-src"
out="${ANSHIN_GUARDRAILS_DICT:-$work/ipadic}"
stamp="$out/.built-from"

if [ -f "$ipadic_src/matrix.def" ]; then
  step "mecab-ipadic already installed at $ipadic_src"
else
  step "installing the Debian package mecab-ipadic"
  apt_get=apt-get
  [ "$(id -u)" = 0 ] || apt_get="sudo apt-get"
  $apt_get install -y mecab-ipadic >/dev/null \
    || { $apt_get update >/dev/null && $apt_get install -y mecab-ipadic >/dev/null; } \
    || fail "apt-get install mecab-ipadic (is the Debian archive reachable? are you root or in sudoers?)"
  [ -f "$ipadic_src/matrix.def" ] || fail "mecab-ipadic installed but $ipadic_src/matrix.def is missing"
fi

version=$(dpkg-query -W -f='${Version}' mecab-ipadic 2>/dev/null || echo unknown)
want="mecab-ipadic $version / $(sha256sum "$(dirname "$0")/../../guardrails/src/dict.rs" | cut -c1-16)"
if [ -s "$out/system.dic" ] && [ -s "$out/names-romaji.tsv" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  step "dictionary already built at $out ($want)"
  exit 0
fi

step "converting IPADIC sources from EUC-JP to UTF-8 into $utf8"
rm -rf "$utf8" && mkdir -p "$utf8"
for f in "$ipadic_src"/*.csv "$ipadic_src"/matrix.def "$ipadic_src"/char.def "$ipadic_src"/unk.def; do
  iconv -f EUC-JP -t UTF-8 "$f" > "$utf8/$(basename "$f")" || fail "iconv $f"
done

step "building anshin-guardrails (debug profile, shared target dir)"
cd "$ANSHIN_ROOT"
cargo build -p anshin-guardrails --bin anshin-guardrails >/dev/null 2>"$work/build.log" \
  || { tail -n 30 "$work/build.log" >&2; fail "cargo build -p anshin-guardrails"; }

step "compiling the vibrato dictionary into $out"
"$CARGO_TARGET_DIR/debug/anshin-guardrails" build-dict --ipadic "$utf8" --out "$out" \
  || fail "anshin-guardrails build-dict --ipadic $utf8 --out $out"
echo "$want" > "$stamp"
step "dictionary ready: $(du -sh "$out" | cut -f1) at $out"
