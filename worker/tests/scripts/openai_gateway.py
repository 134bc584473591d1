"""The official `openai` package against `sealtune gateway` (driven by worker/tests/gateway_openai.rs).

Usage: openai_gateway.py BASE_URL TRAINING_FILE RESULT_OUT. Prints one JSON document: the job, every
event (paged two at a time by the package's cursor pagination), the checkpoints, and the errors the
bad inputs got.
"""
import json
import sys
import time

import openai
from openai import OpenAI

base_url, training_file, result_out = sys.argv[1:4]

# The example of docs/customer-guide.md, as a customer writes it.
client = OpenAI(base_url=base_url, api_key="unused-by-sealtune", max_retries=0)
f = client.files.create(file=open(training_file, "rb"), purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    training_file=f.id,
    model="quick-test-model",
    hyperparameters={"n_epochs": 1, "learning_rate_multiplier": 0.01},
)

deadline = time.time() + 300
while job.status not in ("succeeded", "failed", "cancelled"):
    if time.time() > deadline:
        sys.exit(f"job still {job.status} after 300 s")
    time.sleep(1)
    job = client.fine_tuning.jobs.retrieve(job.id)

first_page = client.fine_tuning.jobs.list_events(job.id, limit=2)
events = [e.to_dict() for e in client.fine_tuning.jobs.list_events(job.id, limit=2)]

result = None
if job.status == "succeeded":
    client.files.content(job.result_files[0]).write_to_file(result_out)
    result = job.result_files[0]

checkpoints = [c.to_dict() for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
listed = client.fine_tuning.jobs.list(limit=1)


def refused(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.body}
    return None


errors = {
    "unknown_model": refused(
        lambda: client.fine_tuning.jobs.create(training_file=f.id, model="no-such-model")
    ),
    "bad_file": refused(
        lambda: client.files.create(file=("notes.jsonl", b"these are not JSON records\n"), purpose="fine-tune")
    ),
    "cancel_finished": refused(lambda: client.fine_tuning.jobs.cancel(job.id)),
    "unknown_job": refused(lambda: client.fine_tuning.jobs.retrieve("ftjob-nope")),
}

print(
    json.dumps(
        {
            "openai_version": openai.__version__,
            "file": f.to_dict(),
            "job": job.to_dict(),
            "first_page_has_more": first_page.has_more,
            "first_page_len": len(first_page.data),
            "events": events,
            "result_file": result,
            "checkpoints": checkpoints,
            "listed": [j.id for j in listed.data],
            "errors": errors,
        }
    )
)
