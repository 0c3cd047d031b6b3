# arbor unit-test harness: runs solution.py, then each assertion in tests.json, and reports
# per-assertion results on stdout after a per-run nonce read from stdin (so the solution cannot
# forge the report line without the nonce, which it never sees).
import json, sys, traceback

nonce = sys.stdin.readline().strip()
report = {"loaded": False, "load_error": None, "results": []}
ns = {"__name__": "solution"}
try:
    with open("solution.py") as f:
        exec(compile(f.read(), "solution.py", "exec"), ns)
    report["loaded"] = True
except BaseException as e:  # the solution's own failure, reported, not raised
    report["load_error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
if report["loaded"]:
    with open("tests.json") as f:
        tests = json.load(f)
    for t in tests:
        try:
            exec(compile(t, "<test>", "exec"), dict(ns))
            report["results"].append({"test": t, "passed": True, "error": None})
        except BaseException as e:
            msg = "".join(traceback.format_exception_only(type(e), e)).strip()
            report["results"].append({"test": t, "passed": False, "error": msg})
sys.stdout.flush()
print("\n" + nonce + " " + json.dumps(report), flush=True)
