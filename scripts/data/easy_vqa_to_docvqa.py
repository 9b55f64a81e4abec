#!/usr/bin/env python3
"""easy-VQA wheel -> DocVQA-format directories (stdlib only; called by scripts/get_easy_vqa.sh).

    easy_vqa_to_docvqa.py WHEEL DEST

Writes DEST/{train,test}/questions.json and images/N.png exactly as the wheel holds them, and
DEST/{train,test}/val_v1.0.json in the DocVQA layout. Each split is staged in a temporary folder and
renamed into place, so an interrupted run leaves no half-written split.
"""
import json
import os
import shutil
import sys
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import write_json  # noqa: E402


def convert(wheel, dest):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        with open(os.path.join(dest, "answers.txt"), "wb") as f:
            f.write(z.read("easy_vqa/data/answers.txt"))
        for split in ("train", "test"):
            stage = os.path.join(dest, f".{split}.partial")
            shutil.rmtree(stage, ignore_errors=True)
            os.makedirs(os.path.join(stage, "images"))
            raw = z.read(f"easy_vqa/data/{split}/questions.json")
            questions = json.loads(raw)
            with open(os.path.join(stage, "questions.json"), "wb") as f:
                f.write(raw)
            data = []
            for k, (q, a, img) in enumerate(questions):
                name = f"easy_vqa/data/{split}/images/{int(img)}.png"
                if name not in names:
                    sys.exit(f"easy_vqa_to_docvqa: {wheel}: {split} question {k} names image {img}, which the wheel lacks")
                data.append({"questionId": k, "question": q, "question_types": ["easy-vqa"],
                             "image": f"images/{int(img)}.png", "docId": int(img), "answers": [a]})
            for img in sorted({int(i) for _, _, i in questions}):
                with open(os.path.join(stage, "images", f"{img}.png"), "wb") as f:
                    f.write(z.read(f"easy_vqa/data/{split}/images/{img}.png"))
            write_json(os.path.join(stage, "val_v1.0.json"), {"dataset_name": "easy-vqa", "dataset_split": split,
                                                               "dataset_version": "1.0", "data": data}, indent=1)
            final = os.path.join(dest, split)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(stage, final)
            print(f"easy_vqa_to_docvqa: {final}: {len(data)} questions, "
                  f"{len({d['docId'] for d in data})} images", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: easy_vqa_to_docvqa.py WHEEL DEST")
    convert(sys.argv[1], sys.argv[2])
