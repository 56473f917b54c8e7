#!/bin/sh
# Add HyperInverter Studio to the desktop's application menu (Linux, per user, no root needed).
# Run from a checkout after `pip install -e .` (or any install that puts `hyperinverter-studio`
# on PATH):   sh assets/install-desktop-entry.sh        To remove: sh assets/install-desktop-entry.sh --remove
set -eu
here=$(cd "$(dirname "$0")" && pwd)
icons="$here/../hyperinverter_gui/_qt/icons"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
name=hyperinverter-studio
if [ "${1:-}" = "--remove" ]; then
    rm -f "$data/applications/$name.desktop" "$data/icons/hicolor/scalable/apps/$name.svg"
    for n in 16 24 32 48 64 128 256 512; do rm -f "$data/icons/hicolor/${n}x${n}/apps/$name.png"; done
    done="removed"
else
    done="installed"
    command -v "$name" >/dev/null 2>&1 || echo "note: $name is not on PATH yet (pip install -e . installs it)" >&2
    for n in 16 24 32 48 64 128 256 512; do
        install -D -m 644 "$icons/$name-$n.png" "$data/icons/hicolor/${n}x${n}/apps/$name.png"
    done
    install -D -m 644 "$here/$name.svg" "$data/icons/hicolor/scalable/apps/$name.svg"
    install -D -m 644 "$here/$name.desktop" "$data/applications/$name.desktop"
fi
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
echo "$done: $data/applications/$name.desktop"
