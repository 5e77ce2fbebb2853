#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian/Ubuntu machine: installs what the tests need
# (OpenSSH server and sudo for the bootstrap test hosts, the Python packages into .venv),
# then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v sudo >/dev/null 2>&1 || need_apt+=(sudo)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The bootstrap test hosts: mount namespaces (unshare), host keys (ssh-keygen), and the system
# python3 that runs the fake GPU-host commands and the probe inside each host.
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# The test hosts' fake commands are a small C client (tests/bootstrap/fakehost/fakehost-client.c).
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# Real terminals: the layout tests run dsinfra in tmux panes of 80x24 and 200x50.
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Byte-compile our own modules once: the suite starts dsinfra in hundreds of subprocesses, and
# where PYTHONDONTWRITEBYTECODE is set (this machine's shell sets it) each one compiled them
# again (about 0.3-0.5 s each, measured on `dsinfra plan dev`).
.venv/bin/python -m compileall -q -j 0 dsinfra cli ops infra cloud bootstrap tests >/dev/null
# And pytest may then keep its own compiled, assertion-rewritten test modules: with
# PYTHONDONTWRITEBYTECODE set it rewrote all of them again in each worker (collection took
# 6.4 s instead of 2.6 s per process, measured here). Python modules the tests start in
# subprocesses (helpers under tests/, moto with its contracts) cache theirs too.
unset PYTHONDONTWRITEBYTECODE
# Two workers by default (CI's machine has 2 cores; the test hosts take a subnet per worker);
# a later -n on the command line wins.
exec .venv/bin/python -m pytest -n "${DSINFRA_TEST_WORKERS:-2}" "$@"
