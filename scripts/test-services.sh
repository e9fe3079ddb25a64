#!/usr/bin/env bash
# Prepare the local services the test-suite needs (called by `make services`,
# and so by `make test` and .ci/run).
#
#   1. Debian packages: docker.io busybox-static chromium bash-static
#      (installed only as root with apt-get; otherwise skipped with a message).
#   2. Docker: start dockerd in the background when `docker info` does not answer.
#   3. Test image: build chaser-test/busybox:latest from busybox-static with
#      `docker import` (no image registry is reachable here: never pull).
#   4. Runner image: build chaser-test/runner:latest for `github.runner` jobs: busybox
#      plus Debian's bash-static as /bin/bash (root's login shell), and python3 with its
#      standard library copied from the host's Debian python3 when it is there.
#
# Idempotent and quiet on success: when everything is already in place it
# prints nothing. It prints one line per change it makes, and a WARNING (on
# stderr) for anything it could not prepare; it never fails because a service
# is unavailable: the tests that need it say so themselves.
#
# To add a step: write a `step_<name>` function below and call it from main().
#
# Environment knobs (all optional):
#   CHASER_TEST_IMAGE      test image tag       (default chaser-test/busybox:latest)
#   CHASER_RUNNER_IMAGE    runner image tag     (default chaser-test/runner:latest)
#   CHASER_RUNNER_PYTHON=0 leave python3 out of the runner image
#   CHASER_DOCKERD_LOG     dockerd log file     (default /tmp/chaser-dockerd.log)
#   CHASER_DOCKERD_WAIT    seconds to wait for dockerd to answer (default 30)
#   CHASER_SKIP_APT=1      never install Debian packages
#   CHASER_SKIP_DOCKER=1   do not start dockerd or build the image
set -euo pipefail

DEBIAN_PACKAGES=(docker.io busybox-static chromium bash-static)
TEST_IMAGE=${CHASER_TEST_IMAGE:-chaser-test/busybox:latest}
RUNNER_IMAGE=${CHASER_RUNNER_IMAGE:-chaser-test/runner:latest}
DOCKERD_LOG=${CHASER_DOCKERD_LOG:-/tmp/chaser-dockerd.log}
DOCKERD_WAIT=${CHASER_DOCKERD_WAIT:-30}
DOCKER_SOCK=/var/run/docker.sock
APT_LOG=/tmp/chaser-apt.log

# dpkg, apt-get and dockerd live in sbin directories that a non-login root
# shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# ------------------------------------------------------------------ helpers --

note() { printf 'test-services: %s\n' "$*"; }
warn() { printf 'test-services: WARNING: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# True when the Debian package is fully installed (not merely known to dpkg).
deb_installed() {
    dpkg -s "$1" 2>/dev/null | grep -qx 'Status: install ok installed'
}

docker_answers() {
    have docker && timeout 10 docker info >/dev/null 2>&1
}

# ----------------------------------------------------------- step: packages --

APT_UPDATED=0

apt_update_once() {
    [[ $APT_UPDATED -eq 1 ]] && return 0
    APT_UPDATED=1
    if ! apt-get update >>"$APT_LOG" 2>&1; then
        warn "apt-get update failed (see $APT_LOG); trying to install anyway"
    fi
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
        >>"$APT_LOG" 2>&1
}

step_packages() {
    [[ -n ${CHASER_SKIP_APT:-} ]] && return 0
    local missing=() pkg
    if have dpkg; then
        for pkg in "${DEBIAN_PACKAGES[@]}"; do
            deb_installed "$pkg" || missing+=("$pkg")
        done
    else
        warn "dpkg not found (not a Debian system?): cannot check for ${DEBIAN_PACKAGES[*]}"
        return 0
    fi
    [[ ${#missing[@]} -eq 0 ]] && return 0

    if ! is_root || ! have apt-get; then
        warn "missing Debian packages: ${missing[*]}; not root or no apt-get, so not" \
            "installing them (tests that need them will say so)." \
            "As root: apt-get install ${missing[*]}"
        return 0
    fi

    note "installing Debian packages: ${missing[*]} (log: $APT_LOG)"
    apt_update_once
    if apt_install "${missing[@]}"; then
        return 0
    fi
    # One bad package must not keep the others out: retry one at a time.
    local failed=()
    for pkg in "${missing[@]}"; do
        deb_installed "$pkg" && continue
        apt_install "$pkg" || failed+=("$pkg")
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        warn "could not install Debian packages: ${failed[*]} (see $APT_LOG);" \
            "tests that need them will say so"
    fi
}

# ------------------------------------------------------------- step: docker --

dockerd_running() {
    local pid
    [[ -r /var/run/docker.pid ]] || return 1
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 1
    # A stale pid file may name a process that is not dockerd any more.
    [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]
}

step_docker() {
    [[ -n ${CHASER_SKIP_DOCKER:-} ]] && return 0
    docker_answers && return 0

    if ! have docker; then
        warn "no docker client on PATH; Docker tests will be skipped"
        return 0
    fi
    if [[ -n ${DOCKER_HOST:-} && ${DOCKER_HOST} != "unix://$DOCKER_SOCK" ]]; then
        warn "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd"
        return 0
    fi
    if ! have dockerd; then
        warn "dockerd not found (Debian package docker.io missing); Docker tests will be skipped"
        return 0
    fi
    if ! is_root; then
        warn "Docker does not answer and starting dockerd needs root; Docker tests will be skipped"
        return 0
    fi

    if ! dockerd_running; then
        note "starting dockerd (log: $DOCKERD_LOG)"
        # Detached from this shell and from make's output pipes, so it outlives
        # the script and never holds a pipe open.
        setsid dockerd --host "unix://$DOCKER_SOCK" </dev/null >>"$DOCKERD_LOG" 2>&1 &
        disown || true
    fi

    local waited=0
    until docker_answers; do
        if [[ $waited -ge $DOCKERD_WAIT ]]; then
            warn "dockerd did not answer within ${DOCKERD_WAIT}s (see $DOCKERD_LOG);" \
                "Docker tests will be skipped"
            tail -n 5 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/test-services:   dockerd: /' >&2 || true
            return 0
        fi
        if ! dockerd_running && [[ $waited -ge 3 ]]; then
            warn "dockerd exited (see $DOCKERD_LOG); Docker tests will be skipped"
            tail -n 5 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/test-services:   dockerd: /' >&2 || true
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# --------------------------------------------------------- step: test image --

find_static_busybox() {
    local candidate
    for candidate in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
        [[ -n $candidate && -x $candidate ]] || continue
        # A dynamic busybox would not run in an image without its libraries.
        if ! ldd "$candidate" >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Runs in a subshell so that its EXIT trap removes the scratch directory.
build_busybox_image() (
    local busybox=$1 work rootfs applet
    work=$(mktemp -d /tmp/chaser-busybox.XXXXXX) || exit 1
    trap 'rm -rf "$work"' EXIT
    rootfs=$work/rootfs
    mkdir -p "$rootfs"/{bin,dev,etc,home,proc,root,sys,tmp,usr,var/tmp} || exit 1
    chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp" || exit 1
    cp "$busybox" "$rootfs/bin/busybox" || exit 1
    # Same result as `busybox --install -s /bin` run inside the rootfs, but with
    # relative links and no chroot: one symlink per applet (sh, ls, cat, echo,
    # sleep, true, false, ...).
    "$busybox" --list >"$work/applets" || exit 1
    while read -r applet; do
        [[ -z $applet || $applet == busybox ]] && continue
        ln -sf busybox "$rootfs/bin/$applet" || exit 1
    done <"$work/applets"
    ln -s bin "$rootfs/sbin" && ln -s ../bin "$rootfs/usr/bin" && ln -s ../bin "$rootfs/usr/sbin" ||
        exit 1
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd" || exit 1
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$rootfs/etc/group" || exit 1

    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/sh"]' \
        --change 'LABEL org.chaser.test-image=busybox' \
        --message 'chaser test image from Debian busybox-static' \
        - "$TEST_IMAGE" >/dev/null
)

step_test_image() {
    [[ -n ${CHASER_SKIP_DOCKER:-} ]] && return 0
    docker_answers || return 0 # step_docker already warned
    docker image inspect "$TEST_IMAGE" >/dev/null 2>&1 && return 0

    local busybox
    if ! busybox=$(find_static_busybox); then
        warn "no static busybox (Debian package busybox-static); cannot build $TEST_IMAGE"
        return 0
    fi
    note "building $TEST_IMAGE from $busybox"
    if ! build_busybox_image "$busybox"; then
        warn "could not build $TEST_IMAGE; Docker tests will be skipped"
    fi
}

# ------------------------------------------------------- step: runner image --

find_static_bash() {
    local candidate
    for candidate in /bin/bash-static /usr/bin/bash-static; do
        [[ -x $candidate ]] && ! ldd "$candidate" >/dev/null 2>&1 && {
            printf '%s\n' "$candidate"
            return 0
        }
    done
    return 1
}

# python3 (the host's, from Debian's python3 package) with the libraries it links and its
# standard library, without tests, idle, tkinter and caches: about 40 MB.
add_python() {
    local rootfs=$1 python lib version
    python=$(readlink -f /usr/bin/python3 2>/dev/null) || return 0
    [[ -x $python ]] && ldd "$python" >/dev/null 2>&1 || return 0
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || return 0
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/lib" || return 1
    cp "$python" "$rootfs/usr/local/bin/python3" || return 1
    ln -sf python3 "$rootfs/usr/local/bin/python"
    tar -C /usr/lib -c --exclude=test --exclude=tests --exclude=idlelib --exclude=tkinter \
        --exclude=__pycache__ --exclude=turtledemo --exclude=site-packages \
        --exclude=dist-packages --exclude='config-*' "python$version" |
        tar -C "$rootfs/usr/lib" -x || return 1
    # The libraries python3 and its extension modules (ssl, ctypes, sqlite3, ...) link.
    for lib in $(ldd "$python" "$rootfs/usr/lib/python$version"/lib-dynload/*.so 2>/dev/null |
        grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
        [[ -e $lib && ! -e $rootfs$lib ]] || continue
        mkdir -p "$rootfs$(dirname "$lib")" && cp -L "$lib" "$rootfs$lib" || return 1
    done
}

# Runs in a subshell so that its EXIT trap removes the scratch directory.
build_runner_image() (
    local busybox=$1 bash=$2 work rootfs applet
    work=$(mktemp -d /tmp/chaser-runner.XXXXXX) || exit 1
    trap 'rm -rf "$work"' EXIT
    rootfs=$work/rootfs
    mkdir -p "$rootfs"/{bin,dev,etc,home,proc,root,sys,tmp,usr/local/bin,var/tmp,opt} || exit 1
    chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp" || exit 1
    cp "$busybox" "$rootfs/bin/busybox" || exit 1
    "$busybox" --list >"$work/applets" || exit 1
    while read -r applet; do
        [[ -z $applet || $applet == busybox ]] && continue
        ln -sf busybox "$rootfs/bin/$applet" || exit 1
    done <"$work/applets"
    rm -f "$rootfs/bin/bash" && cp "$bash" "$rootfs/bin/bash" || exit 1
    ln -s bin "$rootfs/sbin" && ln -s ../bin "$rootfs/usr/bin" && ln -s ../bin "$rootfs/usr/sbin" ||
        exit 1
    printf '%s\n' 'root:x:0:0:root:/root:/bin/bash' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd" || exit 1
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$rootfs/etc/group" || exit 1
    printf '%s\n' '/bin/sh' '/bin/bash' >"$rootfs/etc/shells" || exit 1
    if [[ ${CHASER_RUNNER_PYTHON:-1} != 0 ]]; then
        add_python "$rootfs" || warn "python3 left out of $RUNNER_IMAGE"
    fi

    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/sh"]' \
        --change 'LABEL org.chaser.test-image=runner' \
        --message 'chaser runner image from Debian busybox-static, bash-static and python3' \
        - "$RUNNER_IMAGE" >/dev/null
)

step_runner_image() {
    [[ -n ${CHASER_SKIP_DOCKER:-} ]] && return 0
    docker_answers || return 0 # step_docker already warned
    docker image inspect "$RUNNER_IMAGE" >/dev/null 2>&1 && return 0

    local busybox bash
    if ! busybox=$(find_static_busybox); then
        warn "no static busybox (Debian package busybox-static); cannot build $RUNNER_IMAGE"
        return 0
    fi
    if ! bash=$(find_static_bash); then
        warn "no static bash (Debian package bash-static); cannot build $RUNNER_IMAGE"
        return 0
    fi
    note "building $RUNNER_IMAGE from $busybox and $bash"
    if ! build_runner_image "$busybox" "$bash"; then
        warn "could not build $RUNNER_IMAGE; github.runner tests will fail"
    fi
}

# -------------------------------------------------------------------- main --

main() {
    step_packages
    step_docker
    step_test_image
    step_runner_image
}

main "$@"
