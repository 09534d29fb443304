#!/usr/bin/env bash
# One GPU session of at most ~8 minutes that measures everything docs/benchmarks.md asks of a GPU:
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # OUT_DIR defaults to $OUT, else gpu_check_out/
#
# 1. the parity subset of the test suite on the GPU (fast_ops are off there: they are CPU-only forms;
#    float32 matmuls at full precision, since TF32 would not match the float32 PyTorch reference);
# 2. both models at batch 1 and 16, float32 and bfloat16, against PyTorch eager on the same GPU, and
#    at batch 16 against torch.compile of the reference networks; compile times; XLA's FLOPs -> MFU
#    against the measured bf16 matmul peak;
# 3. XLA's memory for CycleGAN with and without remat at 256/512/1024, and a real 1024x1024 step with remat;
# 4. the input pipeline's examples/s against the host's limit (benchmark --data);
# 5. all-reduce count and bytes of the data-parallel steps after XLA:GPU's passes (several GPUs);
# 6. the precision table measured natively (bf16 and the GPU's TF32 against float32 at highest);
# 7. images/s against device count when there are several GPUs.
#
# Every measurement is one JSON line in OUT_DIR/gpu_check.jsonl (the benchmark's own fields); a
# markdown table of them is OUT_DIR/gpu_check.md. Each part has its own time limit and the whole
# script a deadline (GPU_CHECK_BUDGET_S, default 470 s): parts that would start after it are skipped
# and listed, so a partial run still leaves its results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.jsonl"
: > "$LOG"
BUDGET=${GPU_CHECK_BUDGET_S:-470}
START=$(date +%s)
CACHE="$OUT_DIR/xla_cache"      # the persistent compilation cache: a repeated configuration compiles once
export JAXGAN_CACHE_DIR="$CACHE"
PY=${PYTHON:-python}

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# part NAME LIMIT_S COMMAND...: run it if the deadline allows; its last line (JSON) goes to the log.
part() {
  local name=$1 limit=$2; shift 2
  local remaining; remaining=$(left)
  if (( remaining < 20 )); then
    echo "{\"part\": \"$name\", \"skipped\": \"deadline\"}" >> "$LOG"; echo "skipped (deadline): $name"; return
  fi
  (( limit > remaining )) && limit=$remaining
  echo "== $name (limit ${limit}s, ${remaining}s left)"
  local out; out=$(timeout "$limit" "$@" 2>"$OUT_DIR/$name.stderr"); local rc=$?
  local last; last=$(printf '%s\n' "$out" | tail -n 1)
  if [[ $rc -eq 0 && $last == \{* ]]; then
    printf '%s\n' "$last" | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); r["part"]=sys.argv[1]; print(json.dumps(r))' "$name" >> "$LOG"
  else
    echo "{\"part\": \"$name\", \"rc\": $rc}" >> "$LOG"
    printf '%s\n' "$out" | tail -n 5; tail -n 5 "$OUT_DIR/$name.stderr"
  fi
}

$PY - <<'EOF' | tee "$OUT_DIR/devices.txt"
import jax, torch
print("jax", jax.__version__, jax.default_backend(), jax.devices())
print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

# 1. parity on the GPU
if (( $(left) > 150 )); then
  echo "== parity tests"
  JAX_DEFAULT_MATMUL_PRECISION=highest JAXGAN_REQUIRE_TORCH=1 timeout 150 $PY -m pytest -q -x \
      tests/test_parity_networks.py tests/test_parity_steps.py > "$OUT_DIR/parity.txt" 2>&1
  echo "{\"part\": \"parity\", \"rc\": $?, \"summary\": \"$(tail -n 1 "$OUT_DIR/parity.txt" | tr -d '"')\"}" >> "$LOG"
  tail -n 1 "$OUT_DIR/parity.txt"
else
  echo '{"part": "parity", "skipped": "deadline"}' >> "$LOG"
fi

# GPU_CHECK_EXTRA: arguments added to every speed run, e.g. for a dry run on a CPU machine:
#   GPU_CHECK_TORCH_DEVICE=cpu GPU_CHECK_EXTRA="--size 32 --ngf 8 --netG unet_32 --steps 2" bash scripts/gpu_check.sh /tmp/x
B="$PY scripts/benchmark.py --steps 10 --warmup 3 --rounds 2 --compare torch --cache-dir $CACHE"
B="$B --torch-device ${GPU_CHECK_TORCH_DEVICE:-cuda} ${GPU_CHECK_EXTRA:-}"
# 2. speed against PyTorch, most important first
part cyclegan_b1_f32        90 $B --model cyclegan --batch 1  --dtype float32  --peak
part pix2pix_b1_f32         60 $B --model pix2pix  --batch 1  --dtype float32
part cyclegan_b16_bf16      90 $B --model cyclegan --batch 16 --dtype bfloat16 --peak
part pix2pix_b16_bf16       60 $B --model pix2pix  --batch 16 --dtype bfloat16 --peak
part cyclegan_b16_f32       60 $B --model cyclegan --batch 16 --dtype float32
part pix2pix_b16_f32        45 $B --model pix2pix  --batch 16 --dtype float32
part cyclegan_b16_bf16_tc   90 $B --model cyclegan --batch 16 --dtype bfloat16 --torch-compile
part pix2pix_b16_bf16_tc    60 $B --model pix2pix  --batch 16 --dtype bfloat16 --torch-compile
part cyclegan_b1_bf16       45 $B --model cyclegan --batch 1  --dtype bfloat16
part pix2pix_b1_bf16        45 $B --model pix2pix  --batch 1  --dtype bfloat16
# 3. memory: a real 1024x1024 CycleGAN step with remat first, then XLA's buffer sizes (compile only)
M="$PY scripts/benchmark.py --model cyclegan --batch 1"
part cyclegan_1024_remat_run 90 $M --size 1024 --remat --steps 2 --warmup 1
for size in 256 512 1024; do
  part "cyclegan_${size}_mem"       45 $M --size $size --steps 0
  part "cyclegan_${size}_mem_remat" 45 $M --size $size --steps 0 --remat
done
# 4. the host side: does the default input pipeline keep this machine's accelerators fed? (its examples/s
#    against cores x a bare PIL loop, and against the step rates measured above)
N=$($PY -c 'import jax; print(len(jax.devices()))')
part data_pipeline 60 $PY scripts/benchmark.py --data --accelerators "$N" --rounds 2 --seconds 5
# 5. gradient traffic after XLA:GPU's own passes: all-reduce count and bytes against the parameters' bytes
#    of the compiled data-parallel step (needs several GPUs; on one the step has no collectives)
if (( N > 1 )); then
  part cyclegan_collectives 90 $PY scripts/benchmark.py --sharded-flops --model cyclegan --netG resnet_9blocks \
      --size 128 --width 64 --devices "$N" --no-flops
  part pix2pix_collectives  90 $PY scripts/benchmark.py --sharded-flops --model pix2pix --netG unet_128 --norm batch \
      --size 128 --width 64 --devices "$N" --no-flops
fi
# 6. numerics on the device itself: one step's gradient error against exact float32 under bf16 and the
#    GPU's own TF32 default (docs/precision.md has the CPU emulation of the same table)
part precision_native 120 bash -c "$PY scripts/precision_table.py --native --settings bf16,tf32 --size 128 --ngf 32 \
    > '$OUT_DIR/precision_native.md'"   # the markdown table
# 7. scaling with devices (only when there are several)
if (( N > 1 )); then
  for d in 1 $N; do
    part "cyclegan_b16_bf16_${d}dev" 60 env CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((d - 1))) \
        $PY scripts/benchmark.py --model cyclegan --batch $((16 * d)) --dtype bfloat16 --steps 10
  done
fi

$PY - "$LOG" > "$OUT_DIR/gpu_check.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = max((r.get("peak_jax_gflops", 0) for r in rows if r.get("dtype") == "bfloat16"), default=0)
print("| part | model | size | batch | dtype | jaxgan step s | img/s | PyTorch step s | ratio | compile s | MFU (bf16 peak) | XLA temp MiB | device peak MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
  if "model" not in r:
    print(f"| {r.get('part')} | {r.get('summary', r.get('skipped', 'rc ' + str(r.get('rc'))))} |" + " |" * 11)
    continue
  mfu = f"{r['flops_per_step'] / r['step_s'] / 1e9 / peak:.1%}" if peak and r.get("step_s") else ""
  torch = ("compile " if r.get("torch_compile") else "eager ") + str(r["torch_step_s"]) if "torch_step_s" in r else ""
  print(f"| {r['part']} | {r['model']} | {r['size']} | {r['batch']} | {r['dtype']}{' remat' if r.get('remat') else ''} "
        f"| {r.get('step_s', '')} | {r.get('img_per_s', '')} | {torch} | {r.get('ratio', '')} | {r.get('compile_s', '')} "
        f"| {mfu} | {r.get('xla_temp_mb', '')} | {r.get('device_peak_mb', '')} |")
print(f"\nbf16 matmul peak measured: {peak:.0f} GFLOP/s")
EOF
cat "$OUT_DIR/gpu_check.md"
echo "total $(( $(date +%s) - START )) s"
