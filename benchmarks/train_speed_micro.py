"""Per-clip LogMel time by chunk size and no-grad evaluation time by batch size, 1 thread, in the process's
allocator. Run under each: for a in system tcmalloc; do TINYASC_ALLOCATOR=$a PYTHONPATH=src python -c
"from tinyasc.system import setup; setup(); exec(open('benchmarks/train_speed_micro.py').read())"; done"""
import time, json, torch
from tinyasc.frontend import LogMel
from tinyasc.models import create_model
from tinyasc.system import allocator
torch.set_num_threads(1)
res = {"alloc": allocator()}
def med(fn, n=3):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2]
lm = LogMel().eval()
w = torch.randn(16, 160000) * 0.1
with torch.no_grad():
    lm(w[:2])
    for ch in (16, 4, 2, 1):
        res[f"logmel_ms_per_clip_chunk{ch}"] = 1000 * med(lambda: [lm(w[i:i + ch]) for i in range(0, 16, ch)]) / 16
    for c, name in ((10, "bc_resnet_asc_1"), (80, "bc_resnet_asc_8")):
        m = create_model(name).eval()
        for bs in ((32, 128, 256) if c == 10 else (16, 64, 128)):
            x = torch.randn(bs, 1, 256, 334)
            m(x[:2])
            res[f"eval_c{c}_bs{bs}_ms_per_clip"] = 1000 * med(lambda: m(x), 2) / bs
print("RESULT", json.dumps(res))
