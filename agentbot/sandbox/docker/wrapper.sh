#!/usr/bin/env bash
# The in-container side of every exec (bash, coreutils, findutils and tar are in the image), run as
# `bash -c "$(cat wrapper.sh)" agentbot <mode> <args>...` with mode one of run, put, restore, prepare, save.
# fd 1 is what people see; fd 3 (the exec's stderr) is the report the worker parses.
set -u
readonly LISTING_MAX=1000  # names in a report at most
umask 022
exec 3>&2 2>&1
W=/workspace
D=
trap '[ -z "$D" ] || rm -rf "$D"' EXIT
declare -A seen=()

scratch() { [ -n "$D" ] || D=$(mktemp -d /tmp/.agentbot-run.XXXXXX) || exit 70; }

receive() {  # a tar on stdin with files 0, 1, 2...
    scratch
    tar -x -C "$D" -f - --no-same-owner --no-same-permissions 2>/dev/null \
        || { echo "agentbot: the sandbox could not receive the files"; exit 70; }
}

resolve() {  # resolve <name>: sets target, never a path out of the workspace through a symlink
    local prefix=$W part rest=$1
    target=$W/$1
    while [ "$rest" != "${rest#*/}" ]; do  # a symlink on the way? (builtins only: no fork when none)
        part=${rest%%/*}; rest=${rest#*/}; prefix=$prefix/$part
        [ -L "$prefix" ] && break
    done
    if [ -L "$prefix" ] || [ -L "$target" ]; then
        target=$(realpath -m -- "$target") || target=/
    fi
    case "$target" in
        "$W"/*) ;;
        *) error="filename '$1' leads outside the workspace through a symlink"; return 1 ;;
    esac
    [ "$rest" = "$1" ] || mkdir -p -- "${target%/*}" 2>/dev/null
    true
}

place() {  # place <name> <text> | place <name> --file <payload index>
    resolve "$1" || return 1
    if [ "$2" = --file ]; then
        cat -- "$D/$3" 2>/dev/null > "$target"
    else
        printf '%s' "$2" 2>/dev/null > "$target"
    fi || { rm -f -- "$target" 2>/dev/null; error="cannot write '$1' in the workspace"; return 1; }
}

listing() { find "$W" -type f -printf '%P\t%T@\t%C@\t%s\0' 2>/dev/null; }

is_image() {
    case "${1,,}" in *.png|*.jpg|*.jpeg|*.gif|*.svg|*.webp|*.bmp|*.tif|*.tiff|*.ico) return 0 ;; esac
    return 1
}

report() {  # report <exit code> <timed out> <limit> <max>: header, changed files, a tar of the chosen
    local budget=$3 max=$4 count=0 listed=0 rec name size
    local -a images=() others=() chosen=()
    printf 'AGENTBOT %s %s\n' "$1" "$2" >&3
    if [ "${#seen[@]}" -gt 0 ]; then
        while IFS= read -r -d '' rec; do  # changed = not in the listing from before the run
            [ -z "${seen[$rec]+x}" ] || continue
            name=${rec%$'\t'*}; name=${name%$'\t'*}; name=${name%$'\t'*}
            case "/$name" in */.*|*/__pycache__/*) continue ;; esac
            if is_image "$name"; then images+=("$rec"); else others+=("$rec"); fi
        done < <(listing)
    fi
    # sorted by name as artifacts.changed_files does (a sort process only when there is something to sort)
    [ "${#images[@]}" -lt 2 ] || mapfile -d '' images < <(printf '%s\0' "${images[@]}" | LC_ALL=C sort -z)
    [ "${#others[@]}" -lt 2 ] || mapfile -d '' others < <(printf '%s\0' "${others[@]}" | LC_ALL=C sort -z)
    for rec in ${images[@]+"${images[@]}"} ${others[@]+"${others[@]}"}; do  # artifacts.select, greedy
        size=${rec##*$'\t'}; name=${rec%$'\t'*}; name=${name%$'\t'*}; name=${name%$'\t'*}
        [ "$listed" -lt "$LISTING_MAX" ] || break
        listed=$((listed + 1))
        printf '%s\t%s\0' "$size" "$name" >&3
        if [ "$count" -lt "$max" ] && [ "$size" -le "$budget" ]; then
            chosen+=("$name"); budget=$((budget - size)); count=$((count + 1))
        fi
    done
    printf '\0' >&3
    if [ "$count" -gt 0 ]; then
        tar -c -f - -C "$W" --no-recursion --null --verbatim-files-from \
            -T <(printf '%s\0' "${chosen[@]}") >&3 2>/dev/null
    fi
}

run() {  # run <timeout> <timeout ms> <limit> <max> <n> (<name> <command>)*n [<text>*n, else a tar on stdin]
    local t=$1 t_ms=$2 limit=$3 max=$4 n=$5 i rc timed=0 start error='' target rec
    local -a names=() commands=() steps=() from=()
    shift 5
    for ((i = 0; i < n; i++)); do names+=("$1"); commands+=("$2"); shift 2; done
    [ $# -gt 0 ] || [ "$n" -eq 0 ] || receive
    for ((i = 0; i < n; i++)); do
        from=(--file "$i")  # the text as an argument, else file $i of the tar
        [ $# -eq 0 ] || from=("$1")
        if place "${names[i]}" "${from[@]}"; then
            steps+=("${commands[i]}" "${target#"$W"/}")
        elif [ "${error#cannot write}" != "$error" ]; then  # e.g. a full workspace: run it from /tmp
            echo "[agentbot] $error (is the workspace full?): running it without saving it."
            scratch
            if [ $# -gt 0 ]; then printf '%s' "$1" > "$D/$i"; fi
            steps+=("${commands[i]}" "$D/$i")
        else
            echo "Code not run: $error."
            report 1 0 "$limit" "$max"
            exit 1
        fi
        [ $# -eq 0 ] || shift
    done
    while IFS= read -r -d '' rec; do seen[$rec]=1; done < <(listing)
    seen[/]=1  # never empty, so the report knows a listing was taken
    start=${EPOCHREALTIME/./}
    if [ "$n" -eq 1 ]; then
        { timeout -s KILL "$t" "${steps[@]}" 2>&1 3>&- </dev/null; } 2>/dev/null
    else
        # shellcheck disable=SC2016  # the inner bash expands $1 and $2, not this one
        { timeout -s KILL "$t" bash -c 'while [ $# -gt 0 ]; do "$1" "$2" || exit; shift 2; done' \
            steps "${steps[@]}" 2>&1 3>&- </dev/null; } 2>/dev/null
    fi
    rc=$?
    if [ "$rc" -eq 137 ] && [ $(( (${EPOCHREALTIME/./} - start) / 1000 )) -ge $((t_ms - 50)) ]; then
        timed=1
    fi
    kill -9 -1 2>/dev/null  # every other process of this uid: setsid children, daemons, a fork bomb
    report "$rc" "$timed" "$limit" "$max"
    exit "$rc"
}

put() {  # put [<name>]... with the files as a tar on stdin
    local i=0 error='' target
    receive
    while [ $# -gt 0 ]; do
        place "$1" --file "$i" || { echo "$error"; exit 65; }
        i=$((i + 1)); shift
    done
}

restore() {  # a new container: the saved workspace and matplotlib's prebuilt font cache
    local src=/keep/current
    [ -d "$src" ] || src=/keep/.old
    if [ -d "$src" ]; then cp -R --preserve=mode,timestamps -- "$src/." "$W/" || exit 71; fi
    mkdir -p /tmp/matplotlib && cp -R /opt/agentbot/mplconfig/. /tmp/matplotlib/ 2>/dev/null
    true
}

prepare() {  # before a save: no code left running, everything readable by the saver
    kill -9 -1 2>/dev/null
    chmod -R go+rX -- "$W" 2>/dev/null
    true
}

save() {  # as uid 0 without capabilities: copy the workspace into the volume, then swap it in
    local next=/keep/.next
    rm -rf "$next" && mkdir -m 755 "$next" || exit 72
    cp -R --preserve=mode,timestamps -- "$W/." "$next/" 2>/dev/null
    rm -rf /keep/.old
    if [ -d /keep/current ]; then mv /keep/current /keep/.old || exit 72; fi
    mv "$next" /keep/current && rm -rf /keep/.old
}

"$@"
