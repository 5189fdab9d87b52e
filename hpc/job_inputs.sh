# shellcheck shell=bash
# Sourced by the job scripts (after hpc/env.sh): their inputs, checked before
# anything runs, with one line naming the variable to set and exit status 2.
#
#   RAW="$(raw_graph RAW)" || exit 2
#                    the raw graph in variable RAW: unset, Cora under work_data
#                    (imported on first use); set, it must already be a raw graph
#                    (a misspelt path used to get Cora imported into it)
#   need_dataset DATASET RAW || exit 2
#                    a partitioned dataset named by the user must exist unless a
#                    raw graph to partition into it is named too

raw_graph() {
    local name="$1" dir="${!1:-}"
    if [ -z "$dir" ]; then
        dir="$GRAPPA_ROOT/work_data/cora"
        if [ ! -f "$dir/graph.json" ]; then
            grappa-import planetoid "$GRAPPA_ROOT/datasets/cora" --name cora --out "$dir" >&2 || return 2
        fi
    elif [ ! -f "$dir/graph.json" ]; then
        echo "error: $name=$dir: no graph.json there, not a raw graph (fix: set $name to a directory written" \
             "by grappa-import or grappa-generate, or unset it to train on Cora)" >&2
        return 2
    fi
    printf '%s\n' "$dir"
}

need_dataset() {
    local name="$1" raw_name="$2" dir="${!1:-}"
    if [ -n "$dir" ] && [ -z "${!raw_name:-}" ] && [ ! -f "$dir/manifest.json" ]; then
        echo "error: $name=$dir: no manifest.json there, not a partitioned dataset (fix: set $name to a" \
             "directory written by data_prep/partition.py, or also set $raw_name to a raw graph to partition" \
             "into it)" >&2
        return 2
    fi
}
