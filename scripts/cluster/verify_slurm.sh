#!/bin/bash
# `i2q verify` across the tasks of a Slurm job array: task k scores shard k of N and writes its report
# to OUT/shard-k; merge them when all are done (docs/verify.md, "When one machine is not enough").
#
#   jid=$(sbatch --parsable --array=0-7 scripts/cluster/verify_slurm.sh nf4.i2q idefics2-8b reports \
#             --docvqa docvqa-val --max-new-tokens 32)
#   sbatch --dependency=afterok:$jid --wrap "i2q verify --merge reports/shard-* --report reports/merged"
#
# Arguments: CANDIDATE REFERENCE OUT, then any verify flags (--text, --docvqa, --samples, limits…).
# N is the array's task count and the shard index the task's place in it (SLURM_ARRAY_TASK_ID −
# SLURM_ARRAY_TASK_MIN, 0-based), so --array=0-7 and --array=1-8 both give shards 0/8 … 7/8; a %
# limit (--array=0-7%2) is fine, a step (--array=0-15:2) is not. I2Q names the binary (default: i2q
# on PATH). Every task must see the same models, inputs and OUT (a shared filesystem).
#SBATCH --job-name=i2q-verify
#SBATCH --cpus-per-task=16
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=i2q-verify-%A_%a.log
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: sbatch --array=0-(N-1) $0 CANDIDATE REFERENCE OUT [verify flags…]" >&2
    exit 64
fi
: "${SLURM_ARRAY_TASK_ID:?run as a job array: sbatch --array=0-(N-1) $0 …}"
candidate=$1 reference=$2 out=$3
shift 3
index=$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN))
count=$SLURM_ARRAY_TASK_COUNT
mkdir -p "$out"
exec "${I2Q:-i2q}" verify "$candidate" --reference "$reference" --shard "$index/$count" \
    --report "$out/shard-$index" --no-progress "$@"
