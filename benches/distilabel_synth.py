"""distilabel 1.5.3 doing the work of `arbor synth --no-gate` with 2 candidates and one judge
order: per prompt, two generations (one TextGeneration call with num_generations=2) and one
judge call (UltraFeedback over both generations). Prints one JSON line: items, pairs (rows whose
two ratings differ), wall seconds. Run by `arbor bench synth` against the mock, and by
benches/synth_vs_distilabel.sh against a llama.cpp server.

usage: distilabel_synth.py BASE_URL ITEMS.jsonl BATCH
         [--timeout S] [--max-tokens N] [--judge-max-tokens N] [--temperature T]
         [--judge-temperature T] [--json-schema]
--json-schema constrains the judge to UltraFeedback's own ratings/rationales schema through
llama.cpp's `json_schema` request field (the schema distilabel's structured output would
enforce, sent without instructor), and parses the answer as JSON.
"""
import argparse
import json
import time

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback


class SchemaJudge(UltraFeedback):
    """UltraFeedback parsing its structured (JSON) answer, with the schema sent by the caller."""

    def get_structured_output(self):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("items")
    ap.add_argument("batch", type=int)
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--judge-max-tokens", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--judge-temperature", type=float, default=None)
    ap.add_argument("--json-schema", action="store_true")
    a = ap.parse_args()
    rows = [{"instruction": json.loads(l)["prompt"]} for l in open(a.items) if l.strip()]

    def kwargs(max_tokens, temperature, extra=None):
        k = {}
        if max_tokens is not None:
            k["max_new_tokens"] = max_tokens
        if temperature is not None:
            k["temperature"] = temperature
        if extra:
            k["extra_body"] = extra
        return k

    schema = {
        "type": "object",
        "properties": {
            "ratings": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 5}, "minItems": 2, "maxItems": 2},
            "rationales": {"type": "array", "items": {"type": "string", "maxLength": 300}, "minItems": 2, "maxItems": 2},
        },
        "required": ["ratings", "rationales"],
    }
    start = time.time()
    with Pipeline(name="arbor-bench", enable_metadata=False) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=a.batch)
        gen = TextGeneration(
            llm=OpenAILLM(model="target", base_url=a.base_url, api_key="unused", max_retries=0, timeout=a.timeout,
                          generation_kwargs=kwargs(a.max_tokens, a.temperature)),
            num_generations=2, group_generations=True, input_batch_size=a.batch,
            output_mappings={"generation": "generations", "model_name": "generation_model"},
        )
        judge_llm = OpenAILLM(model="judge", base_url=a.base_url, api_key="unused", max_retries=0, timeout=a.timeout,
                              generation_kwargs=kwargs(a.judge_max_tokens, a.judge_temperature,
                                                       {"json_schema": schema} if a.json_schema else None))
        if a.json_schema:
            judge = SchemaJudge(llm=judge_llm, aspect="overall-rating", input_batch_size=a.batch,
                                use_default_structured_output=True)
        else:
            judge = UltraFeedback(llm=judge_llm, aspect="overall-rating", input_batch_size=a.batch)
        load >> gen >> judge
    distiset = pipeline.run(use_cache=False)
    wall = time.time() - start
    out = distiset["default"]["train"]
    pairs = sum(1 for r in out if r.get("ratings") and len(set(r["ratings"])) > 1 and None not in r["ratings"])
    print(json.dumps({"items": len(out), "pairs": pairs, "wall_s": wall}))


if __name__ == "__main__":
    main()
