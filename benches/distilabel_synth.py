"""distilabel 1.5.3 doing the work of `arbor synth --no-gate` on the same mock: per prompt, two
generations (one TextGeneration call with num_generations=2) and one judge call (UltraFeedback
over both generations). Prints one JSON line: items, pairs (rows whose two ratings differ),
wall seconds. Run by `arbor bench synth`; usage: distilabel_synth.py BASE_URL ITEMS.jsonl BATCH
"""
import json
import sys
import time

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback


def main():
    base_url, items_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = [{"instruction": json.loads(l)["prompt"]} for l in open(items_path) if l.strip()]
    start = time.time()
    with Pipeline(name="arbor-bench", enable_metadata=False) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=batch)
        gen = TextGeneration(
            llm=OpenAILLM(model="target", base_url=base_url, api_key="unused", max_retries=0, timeout=60),
            num_generations=2, group_generations=True, input_batch_size=batch,
            output_mappings={"generation": "generations", "model_name": "generation_model"},
        )
        judge = UltraFeedback(
            llm=OpenAILLM(model="judge", base_url=base_url, api_key="unused", max_retries=0, timeout=60),
            aspect="overall-rating", input_batch_size=batch,
        )
        load >> gen >> judge
    distiset = pipeline.run(use_cache=False)
    wall = time.time() - start
    out = distiset["default"]["train"]
    pairs = sum(1 for r in out if r.get("ratings") and len(set(r["ratings"])) > 1 and None not in r["ratings"])
    print(json.dumps({"items": len(out), "pairs": pairs, "wall_s": wall}))


if __name__ == "__main__":
    main()
