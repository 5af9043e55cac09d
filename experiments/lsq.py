"""Paper Table 2: 2-bit LSQ (learned step sizes), STE vs FOGZO (n = 1).

  python experiments/lsq.py                  # every row that runs here, seeds 0-2
  python experiments/lsq.py --report_only    # rebuild runs/tables/lsq/table.md

With LSQ, FOGZO's ε follows the current learned step of each tensor (fogzo_jax/quant/lsq.py).
"""

import table_runner
from table_runner import FOGZO, LLAMA_20M_SCALE, LLAMA_9M, LLAMA_TINY, LLAMA_TINY_SCALE
from table_runner import RESNET_FASHION, RESNET_FASHION_SCALE
from table_runner import STE, Row, with_confirmed


def make_rows():
  both = {"ste": STE, "fogzo": FOGZO}
  lsq = ("quant.kind=lsq",)
  return with_confirmed([  # + the study's setting (ours) on every row that runs
      Row("deit_small", "LSQ, DeiT-Small, ImageNet-1K (acc %; loss 2.62 → 2.57)",
          {"ste": 79.55, "fogzo": 80.06},
          reason="ImageNet-1K is not on this machine and a 22M-parameter ViT does not train "
                 "in a CPU session; `configs/deit_small_in1k_lsq.py` is the GPU command"),
      Row("llama", "LSQ, LLaMA-20M, C4 (ppl)", {"ste": 50.85, "fogzo": 50.61}, LLAMA_TINY_SCALE,
          "configs/llama.py:9m", LLAMA_TINY + lsq, both),
      Row("llama20m", "LSQ, LLaMA-20M, C4 (ppl)", {"ste": 50.85, "fogzo": 50.61}, LLAMA_20M_SCALE,
          "configs/llama.py:20m", LLAMA_9M + lsq, both),
      Row("resnet18", "LSQ, ResNet-50, ImageNet-1K (acc %; loss 0.43 → 0.39)",
          {"ste": 82.81, "fogzo": 83.67}, RESNET_FASHION_SCALE + " (ResNet-18 for ResNet-50)",
          "configs/resnet18_in100.py", RESNET_FASHION + lsq + ("model.quantize_first_last=false",),
          both),
  ])


if __name__ == "__main__":
  table_runner.main("LSQ 2-bit: STE vs FOGZO (paper Table 2)", make_rows, "runs/tables/lsq")
