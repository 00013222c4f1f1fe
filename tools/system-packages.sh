#!/usr/bin/env bash
# Real components the tests use that come from Debian, not from Go modules or PyPI:
#   softhsm2       a PKCS#11 token (SoftHSM2) for the HSM signer tests (issue 17)
#   openssh-client ssh-agent and ssh-keygen for the SSH signer tests
#   openssh-tests  OpenSSH's own sk-dummy.so security-key middleware, so hardware-backed
#                  sk-ssh-ed25519@openssh.com keys are made and used by the real ssh-agent
#                  and ssh-keygen without a FIDO token (it must match the installed OpenSSH)
#   chromium, chromium-driver
#                  a real headless browser and its WebDriver (/usr/bin/chromium,
#                  /usr/bin/chromedriver, the same Chromium build) for the console's browser
#                  test (issue 19: tests/e2e/test_console_browser.py, driven with selenium)
# Installed with apt-get when missing (root, as on CI); otherwise the command to run is
# printed and this fails: a missing real component fails the tests, never skips them.
set -euo pipefail
packages=(softhsm2 openssh-client openssh-tests chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
# openssh-tests must be built from the same OpenSSH as the installed client (sk-api version)
if [ ${#missing[@]} -eq 0 ]; then
  client=$(dpkg-query -W -f='${Version}' openssh-client)
  tests=$(dpkg-query -W -f='${Version}' openssh-tests)
  [ "$client" = "$tests" ] || missing+=(openssh-client openssh-tests)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq "${missing[@]}" >/dev/null
