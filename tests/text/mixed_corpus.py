"""mixed_corpus.py: a deterministic mixed-text corpus for the tokenizer tests and benchmark.

make_docs(seed, nbytes) returns a list of documents (bytes) of about nbytes in total, drawn
with random.Random(seed) from the snippets below: English prose, source code, whitespace
runs (spaces, tabs, CR LF, no-break and ideographic spaces, NEL), CJK, emoji (with ZWJ
sequences and skin tones), digits, contractions in any case, decomposed accents (NFC
changes them), added-token strings of the tested tokenizers inside text, random code
points from many scripts, and ill-formed UTF-8 (truncated sequences, lone continuation
bytes, overlongs, surrogates, bytes F5..FF).
"""
import random

PROSE = [
    "The committee met on Tuesday to review the proposal, and after a long discussion "
    "it decided that the budget would be revised before the end of the quarter.",
    "She didn't think it'd rain, but we'll see; they're sure it's going to clear up by noon, "
    "and I've heard the forecast ISN'T reliable.",
    "In 1969, 600 million people watched the landing. Prices rose 3.75% to $1,234,567.89 "
    "over 12 months (see Table 4b, p. 231).",
    "Once upon a time there was a little fox who lived at the edge of a quiet forest. "
    "Every morning he walked to the river to drink and watch the fish.",
    "Quantization maps each weight to one of 2^b levels; with group size 128 the scale "
    "is shared by 128 consecutive inputs.",
    "\"Well,\" he said -- pausing -- \"that's... not what I expected!\" (Really?) Yes: really.",
    "E-mail me at someone@example.org or visit https://example.com/path?q=1&r=two#frag.",
]

CODE = [
    "def merge(a, b):\n    \"\"\"Merge two sorted lists.\"\"\"\n    out = []\n    i = j = 0\n"
    "    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n"
    "        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]\n",
    "static int sum(const int *x, size_t n) {\n\tint s = 0;\n\tfor (size_t i = 0; i < n; ++i)\n"
    "\t\ts += x[i];\n\treturn s;\n}\n",
    "<html>\n  <body class=\"main\">\n    <p id='x'>Hello &amp; goodbye</p>\n  </body>\n</html>\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY id DESC;\n",
    "fn main() {\r\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\r\n"
    "    println!(\"{:?}\", v);\r\n}\r\n",
    "    if (a && b || !c) { x <<= 2; y >>= 3; z ^= ~w; }  // 0x1F, 1e-9, 3.14159\n",
]

CJK = [
    "我们今天去公园散步，天气非常好。", "東京は日本の首都です。カタカナとひらがな。",
    "한국어 문장도 포함합니다. 안녕하세요!", "量子化は重みを少ないビットで表す手法である。",
    "統一碼（Unicode）包含了世界上大多數的文字系統。", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３",
]

EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇩🇪", "❤️", "🚀✨", "🧑🏿‍💻", "☕", "🎉🎉🎉"]

OTHER = [
    "Ελληνικά γράμματα και λέξεις.", "Русский текст с буквами ё и й.", "العربية من اليمين",
    "हिन्दी भाषा का वाक्य।", "ภาษาไทยไม่มีช่องว่าง", "עברית עם ניקוד: שָׁלוֹם",
    "Tiếng Việt có dấu: Nguyễn, phở, đường.", "Ærøskøbing, Straße, Œuvre, naïve café",
    "e\u0301 a\u0300 o\u0308 u\u0302 n\u0303 A\u030a \u1100\u1161\u11a8 \u0915\u093c",
    "\u212b \u2126 \uf900 \u0958 \u1e9b\u0323 q\u0307\u0323",
    "'s 'S 'll 'LL 'Re 've 'M 'd 'ſ 't’s",
]

SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000",
          "\u2009", "\u0085", "\u2028", "\u000b\u000c", "        ", "\n\n\n\n", "\u180e",
          " \u180e ", "\u200b", "\u001c\u001f"]

ADDED = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
         "<|begin_of_text|>", "<|eot_id|>", "<|assistant|>", "<|user|>", "<|end|>",
         "<|system|>", "<|startoftranscript|>", " <s> ", "</s>\n"]

BAD = [b"\xff", b"\xfe\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf\x80",
       b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
       b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc"]

RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
          (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1E00, 0x1FFF),
          (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x22FF), (0x3000, 0x30FF),
          (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFF00, 0xFFEF),
          (0x1F300, 0x1FAFF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF)]


def _random_text(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(RANGES)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        out.append(chr(cp))
    return "".join(out)


def _digits(rng):
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 14)))


def make_doc(rng):
    parts = []
    for _ in range(rng.randint(1, 24)):
        r = rng.random()
        if r < 0.30:
            parts.append(rng.choice(PROSE).encode())
        elif r < 0.45:
            parts.append(rng.choice(CODE).encode())
        elif r < 0.53:
            parts.append(rng.choice(CJK).encode())
        elif r < 0.58:
            parts.append("".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))).encode())
        elif r < 0.66:
            parts.append(rng.choice(OTHER).encode())
        elif r < 0.76:
            parts.append("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 5))).encode())
        elif r < 0.80:
            parts.append(rng.choice(ADDED).encode())
        elif r < 0.84:
            parts.append(_digits(rng).encode())
        elif r < 0.93:
            parts.append(_random_text(rng, rng.randint(1, 40)).encode())
        else:
            parts.append(rng.choice(BAD))
        if rng.random() < 0.5:
            parts.append(b" ")
    return b"".join(parts)


def make_docs(seed, nbytes):
    rng = random.Random(seed)
    docs, total = [], 0
    while total < nbytes:
        d = make_doc(rng)
        docs.append(d)
        total += len(d)
    return docs
