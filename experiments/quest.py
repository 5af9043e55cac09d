"""Paper Table 3: 2-bit weight + activation quantization of LLaMA (QuEST and LSQ), STE vs FOGZO.

  python experiments/quest.py                # the small-LLaMA rows, seeds 0-2
  python experiments/quest.py --report_only  # rebuild runs/tables/quest/table.md

W+A: every quantized linear layer also quantizes its input (``quantize_activations=True``);
only the weights are perturbed by FOGZO.
"""

import table_runner
from table_runner import FOGZO, LLAMA_TINY, LLAMA_TINY_SCALE, STE, Row, with_confirmed

_GPU_ONLY = ("{} non-embedding parameters, {}× LLaMA-9M, whose FOGZO step already takes 3.8 s at "
             "16 × 256 tokens on this 2-core CPU (bench/throughput.py), so 1.5–2 min a step here; "
             "the GPU command is `configs/llama.py:{}` with --config.quant.kind=quest "
             "--config.quant.activations=True")


def make_rows():
  both = {"ste": STE, "fogzo": FOGZO}
  wa = ("quant.activations=true",)
  return with_confirmed([  # + the study's setting (ours) on every row that runs
      Row("llama_quest_wa", "QuEST W+A, LLaMA-95M, C4 (ppl)", {"ste": 37.75, "fogzo": 37.37},
          LLAMA_TINY_SCALE + " (for 95M)", "configs/llama.py:9m",
          LLAMA_TINY + ("quant.kind=quest",) + wa, both),
      Row("llama_lsq_wa", "LSQ W+A, LLaMA-95M, C4 (ppl)", {"ste": 39.06, "fogzo": 37.38},
          LLAMA_TINY_SCALE + " (for 95M)", "configs/llama.py:9m",
          LLAMA_TINY + ("quant.kind=lsq",) + wa, both),
      Row("quest_200m", "QuEST W+A, LLaMA-200M, C4 (ppl)", {"ste": 26.63, "fogzo": 26.45},
          reason=_GPU_ONLY.format("202M", 23, "200m")),
      Row("quest_300m", "QuEST W+A, LLaMA-300M, C4 (ppl)", {"ste": 22.90, "fogzo": 22.72},
          reason=_GPU_ONLY.format("297M", 33, "300m")),
  ])


if __name__ == "__main__":
  table_runner.main("2-bit W+A LLaMA: STE vs FOGZO (paper Table 3)", make_rows, "runs/tables/quest")
