#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack.
# Idempotent and quick when everything is there.
set -euo pipefail

need_apt=()
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The report test (tests/report.rs) opens the HTML report in headless Chromium.
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || need_apt+=(chromium)
# The dashboard's browser test (dashboard/tests/browser.rs) drives Chromium
# through WebDriver.
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# The alert delivery tests (rules/tests/delivery.rs) send mail to a real SMTP
# server on loopback: aiosmtpd, run by Debian's python3 (/usr/bin/python3).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_apt+=(python3-aiosmtpd)
sudo_cmd=""
can_install=yes
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd="sudo"
  else
    can_install=no
  fi
fi
if [ ${#need_apt[@]} -gt 0 ] && [ "$can_install" = no ]; then
  echo "setup: missing ${need_apt[*]}, and this is neither root nor has sudo:" \
    "install them yourself (apt-get install -y ${need_apt[*]})" >&2
elif [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (DuckDB is built from C++ source; the report test needs a browser; the delivery test an SMTP server)" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add rustfmt
fi
