#!/usr/bin/env python3
"""Render the small DocVQA-format set shipped in Tests/Fixtures/docvqa-mini.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_docvqa_set.py [--out Tests/Fixtures/docvqa-mini]

Pillow 13.0.0 only (no network, no model). Every document — invoices, forms, tables, letters,
receipts, memos — is invented by this script from a seeded random generator (seed 20240611); all
names, companies, addresses and amounts are made up. The content and the rendered images are our
own work, dedicated to the public domain (CC0 1.0); the DejaVu fonts used for rendering are under
the Bitstream Vera / DejaVu licence (free to use, embed and redistribute), see LICENSE in the set.

Output (the official DocVQA layout, as in val_v1.0.json of https://www.docvqa.org):

    val_v1.0.json   {"dataset_name": "docvqa-mini", "dataset_split": "val", "dataset_version": "1.0",
                     "data": [{"questionId", "question", "question_types", "image": "documents/<name>.png",
                               "docId", "ucsf_document_id", "ucsf_document_page_no",
                               "answers": [...], "document_text": "<the text on the page>"}]}
    documents/*.png the rendered pages (RGB, 8-bit)
    README.md, LICENSE

`document_text` is our extension (not in the official files): the page's text, line by line, in
reading order, so that text-only models can be evaluated on the same questions.

A rerun with the same Pillow and FreeType writes byte-identical files.
"""

import argparse
import json
import os
import random
import sys

PIL_VERSION = "13.0.0"
SEED = 20240611
FONT_DIR = "/usr/share/fonts/truetype/dejavu"

import PIL  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

if PIL.__version__ != PIL_VERSION:
    sys.exit(f"expected Pillow {PIL_VERSION}, found {PIL.__version__}; install it: /work/venv/bin/pip install pillow=={PIL_VERSION}")
if not os.path.isdir(FONT_DIR):
    sys.exit(f"{FONT_DIR} not found: install fonts-dejavu-core (apt-get install fonts-dejavu-core)")


def font(name, size):
    return ImageFont.truetype(os.path.join(FONT_DIR, name), size)


SANS, SANS_B, SERIF, SERIF_B, MONO = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf"

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Karin", "Luis",
         "Maya", "Nils", "Olga", "Pavel", "Rosa", "Samir", "Tara", "Viktor"]
LAST = ["Almeida", "Brandt", "Castillo", "Dubois", "Eriksen", "Fischer", "Gallo", "Horvat", "Ibsen", "Jansen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Weber"]
COMPANIES = ["Northwind Paper Co.", "Bluebird Logistics", "Cedar Grove Farms", "Helix Instruments", "Lakeside Printing",
             "Orchid Software Ltd.", "Pinecrest Dental", "Redstone Builders", "Silverline Optics", "Tidewater Foods",
             "Union Street Bakery", "Valley Bicycle Works"]
STREETS = ["Maple Avenue", "Harbor Road", "Station Street", "Mill Lane", "King's Way", "Orchard Drive", "Bridge Street"]
CITIES = ["Springfield", "Riverton", "Fairview", "Milford", "Ashby", "Kingsport", "Westbury", "Glenwood"]
ITEMS = [("Copy paper, A4, 500 sheets", 6.40), ("Toner cartridge", 58.90), ("Desk lamp", 24.50), ("Stapler", 9.75),
         ("Shipping boxes (10)", 17.20), ("Label printer", 119.00), ("USB keyboard", 29.99), ("Whiteboard markers", 7.45),
         ("Office chair", 189.00), ("Filing cabinet", 142.50), ("Notebooks (5)", 11.25), ("Packing tape", 4.30)]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DEPARTMENTS = ["Accounts", "Research", "Logistics", "Sales", "Human Resources", "Quality"]


class Page:
    """A white page; every text call records its line for document_text (in drawing order)."""

    def __init__(self, w, h):
        self.img = Image.new("RGB", (w, h), (255, 255, 255))
        self.d = ImageDraw.Draw(self.img)
        self.lines = []

    def text(self, xy, s, f, fill=(0, 0, 0), record=True, anchor="la"):
        self.d.text(xy, s, font=f, fill=fill, anchor=anchor)
        if record:
            self.lines.append(s)

    def row(self, cells, xs, y, f, fill=(0, 0, 0), anchors=None):
        """A table row: cells drawn at xs; recorded as one line with ' | ' between cells."""
        for i, (c, x) in enumerate(zip(cells, xs)):
            self.d.text((x, y), c, font=f, fill=fill, anchor=(anchors[i] if anchors else "la"))
        self.lines.append(" | ".join(cells))

    def hline(self, x0, x1, y, width=1, fill=(0, 0, 0)):
        self.d.line([(x0, y), (x1, y)], fill=fill, width=width)

    def rect(self, box, outline=(0, 0, 0), fill=None, width=1):
        self.d.rectangle(box, outline=outline, fill=fill, width=width)


def money(x):
    return f"${x:,.2f}"


def money_answers(x):
    return [money(x), f"{x:,.2f}", f"{x:.2f}"] if x >= 1000 else [money(x), f"{x:.2f}"]


def dedup(xs):
    out = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def person(r):
    return f"{r.choice(FIRST)} {r.choice(LAST)}"


def date(r, year=None):
    y = year or r.choice([2021, 2022, 2023])
    m = r.randrange(12)
    d = r.randint(1, 28)
    return f"{MONTHS[m]} {d}, {y}", f"{y}-{m + 1:02d}-{d:02d}"


def address(r):
    return f"{r.randint(2, 240)} {r.choice(STREETS)}", f"{r.choice(CITIES)} {r.randint(10000, 99999)}"


def invoice(r):
    pg = Page(r.choice([560, 600, 640]), r.choice([720, 760, 800]))
    W = pg.img.width
    company = r.choice(COMPANIES)
    customer = person(r)
    inv_no = f"INV-{r.randint(1000, 9999)}"
    d_long, _ = date(r)
    pg.rect((0, 0, W, 70), outline=(40, 70, 120), fill=(40, 70, 120))
    pg.text((24, 20), company, font(SANS_B, 22), fill=(255, 255, 255))
    pg.text((W - 24, 24), "INVOICE", font(SANS_B, 20), fill=(255, 255, 255), anchor="ra")
    f = font(SANS, 14)
    pg.text((24, 90), f"Invoice number: {inv_no}", f)
    pg.text((24, 112), f"Date: {d_long}", f)
    pg.text((24, 144), "Bill to:", font(SANS_B, 14))
    street, city = address(r)
    pg.text((24, 164), customer, f)
    pg.text((24, 184), street, f)
    pg.text((24, 204), city, f)
    y = 245
    xs = [24, W - 230, W - 140, W - 24]
    pg.row(["Description", "Qty", "Unit price", "Amount"], xs, y, font(SANS_B, 13), anchors=["la", "ra", "ra", "ra"])
    pg.hline(20, W - 20, y + 20)
    y += 30
    items = r.sample(ITEMS, r.randint(3, 5))
    subtotal = 0.0
    for name, price in items:
        q = r.randint(1, 6)
        amt = round(q * price, 2)
        subtotal += amt
        pg.row([name, str(q), money(price), money(amt)], xs, y, font(SANS, 13), anchors=["la", "ra", "ra", "ra"])
        y += 24
    pg.hline(20, W - 20, y + 4)
    subtotal = round(subtotal, 2)
    rate = r.choice([5, 8, 10, 20])
    tax = round(subtotal * rate / 100, 2)
    total = round(subtotal + tax, 2)
    y += 16
    fb = font(SANS_B, 14)
    pg.text((W - 140, y), "Subtotal:", f, anchor="ra"); pg.text((W - 24, y), money(subtotal), f, anchor="ra")
    pg.lines[-2:] = [f"Subtotal: {money(subtotal)}"]
    y += 22
    pg.text((W - 140, y), f"Tax ({rate}%):", f, anchor="ra"); pg.text((W - 24, y), money(tax), f, anchor="ra")
    pg.lines[-2:] = [f"Tax ({rate}%): {money(tax)}"]
    y += 26
    pg.text((W - 140, y), "Total due:", fb, anchor="ra"); pg.text((W - 24, y), money(total), fb, anchor="ra")
    pg.lines[-2:] = [f"Total due: {money(total)}"]
    due = r.choice([14, 30, 45])
    pg.text((24, pg.img.height - 50), f"Payment terms: net {due} days. Thank you for your business.", font(SANS, 12))
    qa = [
        ("What is the invoice number?", [inv_no, inv_no.split("-")[1]]),
        ("What is the total amount due?", money_answers(total)),
        (r.choice(["Who is the invoice billed to?", "What is the name of the customer?"]), [customer]),
        ("Which company issued the invoice?", [company, company.rstrip(".")]),
        (f"What is the tax rate?", [f"{rate}%", f"{rate} %", f"{rate} percent"]),
        ("What are the payment terms?", [f"net {due} days", f"{due} days"]),
        ("What is the first item on the invoice?", [items[0][0]]),
    ]
    return pg, "invoice", pick(r, qa)


def form(r):
    pg = Page(r.choice([520, 560, 600]), r.choice([640, 700]))
    W = pg.img.width
    title = r.choice(["Employee Information Form", "Membership Application", "Visitor Registration Form",
                      "Equipment Loan Request"])
    pg.text((W // 2, 28), title, font(SERIF_B, 20), anchor="ma")
    pg.hline(30, W - 30, 62, 2)
    name = person(r)
    _, iso = date(r, year=r.randint(1960, 2000))
    dob = iso
    phone = f"({r.randint(200, 989)}) {r.randint(200, 989)}-{r.randint(1000, 9999)}"
    dept = r.choice(DEPARTMENTS)
    street, city = address(r)
    ident = f"{r.choice('ABCDEFGHJK')}{r.randint(100000, 999999)}"
    fields = [("Full name", name), ("Date of birth", dob), ("Telephone", phone), ("Department", dept),
              ("Street address", street), ("City / postcode", city), ("ID number", ident)]
    y = 86
    fl, fv = font(SANS_B, 13), font(MONO, 14)
    for label, value in fields:
        pg.text((34, y + 6), f"{label}:", fl, record=False)
        pg.rect((180, y, W - 34, y + 30), outline=(120, 120, 120))
        pg.text((188, y + 7), value, fv, fill=(20, 20, 110), record=False)
        pg.lines.append(f"{label}: {value}")
        y += 42
    checked = r.choice(["Yes", "No"])
    pg.text((34, y + 10), "Parking permit required:", fl, record=False)
    for i, opt in enumerate(["Yes", "No"]):
        x = 230 + i * 80
        pg.rect((x, y + 8, x + 16, y + 24))
        if opt == checked:
            pg.d.line([(x + 3, y + 16), (x + 7, y + 21), (x + 14, y + 10)], fill=(0, 0, 0), width=2)
        pg.text((x + 22, y + 8), opt, font(SANS, 13), record=False)
    pg.lines.append(f"Parking permit required: [{'x' if checked == 'Yes' else ' '}] Yes [{'x' if checked == 'No' else ' '}] No")
    y += 60
    signed, _ = date(r, year=2023)
    pg.text((34, y), f"Signed on {signed}", font(SANS, 12))
    qa = [
        ("What is the full name on the form?", [name]),
        ("What is the date of birth?", [dob]),
        ("What is the telephone number?", [phone, phone.replace("(", "").replace(") ", "-")]),
        ("Which department is given?", [dept]),
        ("What is the ID number?", [ident]),
        ("Is a parking permit required?", [checked.lower(), checked]),
        ("What is the title of the form?", [title]),
    ]
    return pg, "form", pick(r, qa)


def table(r):
    pg = Page(r.choice([640, 700, 760]), r.choice([440, 480, 520]))
    W = pg.img.width
    kind = r.choice(["sales", "rainfall"])
    year = r.choice([2019, 2020, 2021, 2022])
    if kind == "sales":
        title = f"Quarterly sales by region, {year} (units)"
        rows = r.sample(["North", "South", "East", "West", "Central", "Coastal"], 4)
        cols = ["Q1", "Q2", "Q3", "Q4"]
        vals = [[r.randint(120, 980) for _ in cols] for _ in rows]
    else:
        title = f"Monthly rainfall {year} (mm)"
        rows = r.sample(CITIES, 4)
        cols = ["Jan", "Feb", "Mar", "Apr", "May"]
        vals = [[r.randint(8, 140) for _ in cols] for _ in rows]
    pg.text((24, 22), title, font(SANS_B, 18))
    head = ["Region" if kind == "sales" else "City"] + cols + ["Total"]
    cw = (W - 48) // len(head)
    xs = [24] + [24 + cw * (i + 1) + cw - 10 for i in range(len(head) - 1)]
    anchors = ["la"] + ["ra"] * (len(head) - 1)
    y = 70
    pg.rect((20, y - 6, W - 20, y + 22), outline=(200, 200, 200), fill=(225, 232, 245))
    pg.row(head, xs, y, font(SANS_B, 14), anchors=anchors)
    y += 34
    for name, v in zip(rows, vals):
        pg.row([name] + [str(x) for x in v] + [str(sum(v))], xs, y, font(SANS, 14), anchors=anchors)
        pg.hline(20, W - 20, y + 24, 1, (200, 200, 200))
        y += 32
    src = r.choice(["internal reporting system", "regional weather offices", "field survey"])
    pg.text((24, y + 20), f"Source: {src}.", font(SERIF, 12))
    i, j = r.randrange(len(rows)), r.randrange(len(cols))
    totals = [sum(v) for v in vals]
    best = rows[totals.index(max(totals))]
    what = "sales" if kind == "sales" else "rainfall"
    qa = [
        (f"What is the {what} for {rows[i]} in {cols[j]}?", [str(vals[i][j])] + ([f"{vals[i][j]} mm"] if kind != "sales" else [])),
        (f"Which {'region' if kind == 'sales' else 'city'} has the highest total?", [best]),
        (f"What is the total for {rows[(i + 1) % 4]}?", [str(totals[(i + 1) % 4])]),
        ("What year does the table cover?", [str(year)]),
        ("What is the source of the data?", [src]),
    ]
    return pg, "table", pick(r, qa)


def letter(r):
    pg = Page(r.choice([560, 600]), r.choice([720, 780]))
    W = pg.img.width
    company = r.choice(COMPANIES)
    sender = person(r)
    to = person(r)
    d_long, _ = date(r, year=2023)
    street, city = address(r)
    pg.text((40, 36), company, font(SERIF_B, 18))
    pg.text((40, 62), f"{street}, {city}", font(SERIF, 12))
    pg.hline(40, W - 40, 84)
    f = font(SERIF, 14)
    pg.text((W - 40, 100), d_long, f, anchor="ra")
    pg.text((40, 130), f"Dear {to},", f)
    ref = f"{r.choice(['PO', 'REF', 'CASE'])}-{r.randint(10000, 99999)}"
    n = r.randint(2, 9)
    meet = r.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
    body = [
        f"Thank you for your letter regarding order {ref}.",
        f"We are pleased to confirm that {n} crates were shipped",
        "this week and should reach you within five working days.",
        f"Our team would like to meet you on {meet} to discuss",
        "the next delivery and the updated price list.",
        "Please let us know if this date is convenient.",
    ]
    y = 164
    for line in body:
        pg.text((40, y), line, f)
        y += 24
    pg.text((40, y + 24), "Yours sincerely,", f)
    pg.text((40, y + 76), sender, font(SERIF_B, 14))
    role = r.choice(["Sales Manager", "Head of Logistics", "Customer Relations", "Director"])
    pg.text((40, y + 98), role, font(SERIF, 13))
    qa = [
        ("Who wrote the letter?", [sender]),
        ("To whom is the letter addressed?", [to]),
        ("What is the date of the letter?", [d_long]),
        ("What order number is mentioned?", [ref]),
        ("How many crates were shipped?", [str(n), ["two", "three", "four", "five", "six", "seven", "eight", "nine"][n - 2]]),
        ("On which day does the team want to meet?", [meet]),
        ("What is the position of the sender?", [role]),
    ]
    return pg, "letter", pick(r, qa)


def receipt(r):
    pg = Page(r.choice([400, 420, 440]), r.choice([600, 640]))
    W = pg.img.width
    shop = r.choice(["Union Street Bakery", "Corner Market", "Green Leaf Grocers", "City Hardware"])
    pg.text((W // 2, 24), shop.upper(), font(MONO, 16), anchor="ma")
    street, city = address(r)
    pg.text((W // 2, 48), f"{street}, {city}", font(MONO, 11), anchor="ma")
    _, iso = date(r, year=2023)
    hh, mm = r.randint(8, 20), r.randint(0, 59)
    pg.text((20, 78), f"{iso}  {hh:02d}:{mm:02d}", font(MONO, 13))
    pg.hline(20, W - 20, 100)
    goods = r.sample([("Bread", 3.20), ("Milk 1L", 1.15), ("Coffee 250g", 5.90), ("Apples 1kg", 2.75), ("Cheese", 4.60),
                      ("Nails (box)", 3.99), ("Batteries AA", 6.49), ("Tea", 2.85)], r.randint(3, 6))
    y = 112
    fm = font(MONO, 13)
    total = 0.0
    for name, price in goods:
        pg.text((20, y), name, fm, record=False)
        pg.text((W - 20, y), f"{price:.2f}", fm, anchor="ra", record=False)
        pg.lines.append(f"{name} {price:.2f}")
        total += price
        y += 22
    total = round(total, 2)
    pg.hline(20, W - 20, y + 4)
    y += 14
    pg.text((20, y), "TOTAL", font(MONO, 15), record=False)
    pg.text((W - 20, y), f"{total:.2f}", font(MONO, 15), anchor="ra", record=False)
    pg.lines.append(f"TOTAL {total:.2f}")
    pay = r.choice(["CASH", "CARD"])
    pg.text((20, y + 30), f"Paid by {pay}", fm)
    pg.text((W // 2, y + 70), "Thank you - please come again", font(MONO, 11), anchor="ma")
    qa = [
        ("What is the total on the receipt?", [f"{total:.2f}", money(total)]),
        ("What is the name of the shop?", [shop, shop.upper()]),
        ("How was the purchase paid?", [pay.lower(), f"by {pay.lower()}"]),
        ("At what time was the purchase made?", [f"{hh:02d}:{mm:02d}"]),
        (f"How much did the {goods[0][0].lower()} cost?", [f"{goods[0][1]:.2f}", money(goods[0][1])]),
    ]
    return pg, "receipt", pick(r, qa)


def memo(r):
    pg = Page(r.choice([600, 640]), r.choice([480, 520, 560]))
    W = pg.img.width
    pg.text((30, 24), "MEMORANDUM", font(SANS_B, 22))
    pg.hline(30, W - 30, 58, 2)
    frm, to = person(r), r.choice(DEPARTMENTS) + " team"
    d_long, _ = date(r, year=2022)
    subj = r.choice(["Office move", "Holiday schedule", "New expense policy", "Fire drill", "Server maintenance"])
    f, fb = font(SANS, 14), font(SANS_B, 14)
    y = 74
    for label, value in [("To", to), ("From", frm), ("Date", d_long), ("Subject", subj)]:
        pg.text((30, y), f"{label}:", fb, record=False)
        pg.text((120, y), value, f, record=False)
        pg.lines.append(f"{label}: {value}")
        y += 24
    pg.hline(30, W - 30, y + 6)
    room = f"{r.choice('ABC')}{r.randint(101, 420)}"
    hour = r.choice(["9:00", "10:30", "13:00", "15:30"])
    body = [f"Please note that the meeting about this topic will take place",
            f"in room {room} at {hour}. Attendance is expected from all staff.",
            "Questions can be sent to the sender of this memo."]
    y += 22
    for line in body:
        pg.text((30, y), line, f)
        y += 22
    qa = [
        ("What is the subject of the memo?", [subj]),
        ("Who sent the memo?", [frm]),
        ("In which room is the meeting?", [room, f"room {room}"]),
        ("At what time is the meeting?", [hour]),
        ("To whom is the memo addressed?", [to]),
    ]
    return pg, "memo", pick(r, qa)


def pick(r, qa):
    k = r.choice([2, 3, 3])
    return [(q, dedup(a)) for q, a in r.sample(qa, k)]


KINDS = [invoice, form, table, letter, receipt, memo]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/docvqa-mini")
    args = ap.parse_args()
    out = args.out
    os.makedirs(os.path.join(out, "documents"), exist_ok=True)
    r = random.Random(SEED)
    data = []
    qid = 1000
    total_bytes = 0
    for i in range(24):
        make = KINDS[i % len(KINDS)]
        pg, kind, qa = make(r)
        name = f"{kind}_{i:02d}"
        rel = f"documents/{name}.png"
        path = os.path.join(out, rel)
        pg.img.save(path, format="PNG", optimize=True)
        total_bytes += os.path.getsize(path)
        text = "\n".join(pg.lines)
        for q, answers in qa:
            data.append({
                "questionId": qid,
                "question": q,
                "question_types": ["form" if kind == "form" else "table/list" if kind in ("table", "invoice", "receipt") else "free_text"],
                "image": rel,
                "docId": 100 + i,
                "ucsf_document_id": name,
                "ucsf_document_page_no": "1",
                "answers": answers,
                "document_text": text,
            })
            qid += 1
    doc = {"dataset_name": "docvqa-mini", "dataset_split": "val", "dataset_version": "1.0", "data": data}
    with open(os.path.join(out, "val_v1.0.json"), "w") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"{len(data)} questions on 24 documents, images {total_bytes / 1e6:.2f} MB -> {out}")


if __name__ == "__main__":
    main()
