"""The request classifier (classifiers/): the trained model, its rules, entities and doubt, the
CLI around it, and the pipeline using it. The model is the one `make test` trains."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from classifiers.dataset import LabelledExample, load_examples, split_of
from classifiers.labels import LABELS
from classifiers.model import RightsClassifier, decide
from classifiers.text import asks, detect_language, normalise
from classifiers.training import evaluate, train
from rightsdesk.cli import app
from rightsdesk.config import Settings
from rightsdesk.models import RequestType
from rightsdesk.service import Desk
from tests.conftest import deliver, mail

ID_NUMBER = "11010519491231002X"  # the GB 11643 example: checksum-valid


@pytest.fixture(scope="module")
def examples() -> list[LabelledExample]:
    return load_examples()


# ---- the figures the issue asks for, on our own fixed test split ------------------------------


def test_test_split_macro_f1_and_exact_match_meet_the_targets(
    model: RightsClassifier, examples: list[LabelledExample]
) -> None:
    test = [ex for ex in examples if ex.split == "test"]
    report = evaluate(model, test, "test")
    assert report.macro_f1 >= 0.95, report.as_dict()
    assert report.exact_match >= 0.90, report.as_dict()
    assert set(report.by_language) == {"zh", "en"}  # reported per language


def test_long_letters_in_the_test_split_are_classified_by_their_ask(
    model: RightsClassifier, examples: list[LabelledExample]
) -> None:
    letters = [ex for ex in examples if ex.split == "test" and len(ex.text) > 3000]
    assert {detect_language(ex.text) for ex in letters} == {"zh", "en"}
    for letter in letters:
        found = model.predict(letter.subject, letter.text)
        assert set(found.labels) == letter.labels, (letter.id, found.labels, found.scores)


def test_a_letter_citing_every_right_asks_for_one(model: RightsClassifier) -> None:
    letter = (
        "Dear Data Protection Officer,\n\n"
        + "Under Articles 44 to 50 of the Personal Information Protection Law individuals have "
        "the right to access, copy, correct, delete and transfer their data, to withdraw "
        "consent and to complain to the regulator. "
        * 12
        + "\n\nI therefore request a copy of all the personal data you hold about me, sent to "
        "my registered email address.\n\n"
        + "I reserve the right to lodge a complaint with the Cyberspace Administration of China "
        "and to bring proceedings before the courts if I hear nothing. "
        * 8
        + "\n\nYours faithfully,\nLi Hua"
    )
    assert len(letter) > 3000
    found = model.predict("Request under the PIPL", letter)
    assert found.labels == ["access"], found.scores
    assert found.lang == "en"


# ---- rules, doubt, language, entities ---------------------------------------------------------


def test_a_batch_is_classified_as_each_message_alone(model: RightsClassifier) -> None:
    """The intake classifies a batch in one call (#15): the same answers as one call each,
    in order, long letters (several units) among short ones."""
    items = [
        ("删除", "请删除我在贵公司保存的全部个人信息。"),
        ("Data", "I would like a copy of all the personal information you hold about me."),
        ("", "123456"),
        ("投诉与更正", "我的手机号码有误，请更正。另外，我要投诉你们的客服。" * 3),
        ("Re: [PRIV-2026-000001]", "Thanks.\n\nAlso please close my account and erase my data."),
    ]
    assert model.classify_many(items) == [model.classify(s, t) for s, t in items]


def test_rule_phrases_are_certain(model: RightsClassifier) -> None:
    assert "account_deletion" in model.predict("", "麻烦帮我注销账号").rules
    assert model.predict("", "麻烦帮我注销账号").scores["account_deletion"] >= 0.99
    assert "withdraw_consent" in model.predict("", "请撤回同意，不要再发了").rules


@pytest.mark.parametrize("reply", ["验证码：358172", "my code is 640213", "382910", "👍"])
def test_a_code_or_an_emoji_alone_is_not_a_request(model: RightsClassifier, reply: str) -> None:
    found = model.predict("", reply)
    assert found.labels == ["not_rights_request"]


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("我儿子12岁，请删除他的账号", True),
        ("My daughter is 9 and made an account, delete it", True),
        ("我儿子十五岁了，请删除他的账号", False),  # 14 or older: not the guardian's procedure
        # The writer's role, then the child's name and age.
        ("I am the mother of Leo Martin, who is 12 years old. Please delete his data.", True),
        ("本人是高一凡的父亲，一凡今年十三岁，请删除他的信息。", True),
        ("I am the father of Sam, who is 19. Please delete his data.", False),
    ],
)
def test_a_child_under_14_is_found_by_age(model: RightsClassifier, text: str, minor: bool) -> None:
    assert ("minor" in model.predict("", text).rules) is minor


def test_deceased_relatives_are_recognised(model: RightsClassifier) -> None:
    found = model.predict("", "My dad died in January. Please close his account.")
    assert {"deceased", "account_deletion"} <= set(found.labels)


def test_doubt_when_nothing_is_sure_or_labels_conflict() -> None:
    thresholds = dict.fromkeys(LABELS, 0.5)
    low = dict.fromkeys(LABELS, 0.1) | {"erasure": 0.3}
    assert decide(low, thresholds) == (["erasure"], True)
    conflict = dict.fromkeys(LABELS, 0.1) | {"erasure": 0.9, "not_rights_request": 0.8}
    assert decide(conflict, thresholds) == (["erasure"], True)
    clear = dict.fromkeys(LABELS, 0.1) | {"erasure": 0.9, "inquiry": 0.7}
    assert decide(clear, thresholds) == (["erasure", "inquiry"], False)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("请删除我的数据", "zh"),
        ("请delete我的account", "zh"),
        (
            "Please delete my data under the 《个人信息保护法》 and the GDPR, thank you very much",
            "en",
        ),
        ("delete my data", "en"),
    ],
)
def test_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_normalising_keeps_offsets_and_folds_traditional_and_full_width() -> None:
    text = "請刪除我的帳號ＡＢＣ"
    assert normalise(text) == "请删除我的帐号abc"
    assert len(normalise(text)) == len(text)


def test_a_long_message_is_read_by_its_asks_without_citations_or_reservations() -> None:
    letter = (
        "根据《个人信息保护法》的规定，个人享有查阅、复制、删除个人信息的权利。" * 20
        + "本人现申请注销账号。"
        + "如贵公司未答复，本人保留向网信部门投诉的权利。" * 5
    )
    found = asks(normalise(letter))
    assert found == ["本人现申请注销账号。"]
    assert asks("请注销我的账号") is None  # short: read whole


def test_entities_are_found_and_id_numbers_masked(model: RightsClassifier) -> None:
    found = model.predict(
        "",
        f"请删除我的数据。邮箱 Zhang.San@Example.com，手机 138-0013-8000，身份证 {ID_NUMBER}，"
        "用户名：ZhangSan_88，原工单 PRIV-2026-000123。",
    )
    by_label = {e["label"]: e["text"] for e in found.entities}
    assert by_label == {
        "EMAIL": "zhang.san@example.com",
        "MOBILE": "13800138000",
        "ID_NUMBER": "110105********002X",
        "USERNAME": "ZhangSan_88",  # case kept
        "TICKET": "PRIV-2026-000123",
    }
    assert ID_NUMBER not in json.dumps(found.as_json("x"))


def test_entities_come_from_the_whole_of_a_letter_read_by_its_asks(model: RightsClassifier) -> None:
    letter = "本人的注册邮箱是 li.hua@example.com。" + "背景情况说明。" * 100 + "本人申请注销账号。"
    found = model.predict("", letter)
    assert [e["text"] for e in found.entities if e["label"] == "EMAIL"] == ["li.hua@example.com"]


# ---- data, splits, determinism ----------------------------------------------------------------


def test_the_data_is_big_enough_and_covers_every_label(examples: list[LabelledExample]) -> None:
    assert len(examples) >= 2500
    for label in LABELS:
        for split in ("train", "dev", "test"):
            assert any(label in ex.labels and ex.split == split for ex in examples), (label, split)


def test_splits_are_a_stable_hash_of_the_text() -> None:
    # Fixed forever: moving an example between splits would invalidate every reported figure.
    texts = ("请注销我的账号", "请删除我的数据", "delete my data")
    assert [split_of(t) for t in texts] == ["train", "dev", "test"]


def test_training_is_deterministic(examples: list[LabelledExample]) -> None:
    sample = [ex for ex in examples if ex.source == "line"][::6]
    first = train(sample, "bow", epochs=2, refit=False).classifier
    second = train(sample, "bow", epochs=2, refit=False).classifier
    texts = [("", "请删除我的数据"), ("", "close my account"), ("", "你们的数据存在哪里")]
    assert [p.scores for p in first.predict_many(texts)] == [
        p.scores for p in second.predict_many(texts)
    ]
    assert first.thresholds == second.thresholds


# ---- the CLI -----------------------------------------------------------------------------------


def test_classify_jsonl_streams_in_input_order(model: RightsClassifier) -> None:
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "rightsdesk"),
            "classify",
            "--jsonl",
            "--batch-size",
            "2",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "RIGHTSDESK_CONFIG"},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    lines = [
        {"id": 1, "subject": "", "text": "请注销我的账号"},
        {"id": "b", "subject": "Unsubscribe", "text": "stop sending me marketing emails"},
    ]
    for line in lines:
        process.stdin.write(json.dumps(line, ensure_ascii=False) + "\n")
    process.stdin.flush()
    # Answers arrive while stdin is still open: nothing waits for the end of the input.
    first, second = json.loads(process.stdout.readline()), json.loads(process.stdout.readline())
    process.stdin.write("not json\n")
    process.stdin.write(json.dumps({"id": 3, "text": "验证码 123456"}) + "\n")
    process.stdin.close()
    rest = [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=60) == 0
    assert [first["id"], second["id"]] == [1, "b"]
    assert "account_deletion" in first["labels"]
    assert first["lang"] == "zh"
    assert "withdraw_consent" in second["labels"]
    assert second["lang"] == "en"
    assert set(first) == {"id", "labels", "scores", "lang", "needs_review", "entities"}
    assert set(first["scores"]) == set(LABELS)
    assert rest[0]["id"] is None
    assert "not JSON" in rest[0]["error"]
    assert rest[1]["id"] == 3
    assert rest[1]["labels"] == ["not_rights_request"]


def test_classifier_eval_prints_a_table_and_json(model: RightsClassifier) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["classifier", "eval", "--split", "dev"])
    assert table.exit_code == 0, table.stderr
    assert "macro-F1" in table.stdout
    assert "not_rights_request" in table.stdout
    data = json.loads(runner.invoke(app, ["classifier", "eval", "--json"]).stdout)
    assert data["split"] == "test"
    assert {s["label"] for s in data["labels"]} == set(LABELS)
    wrong = runner.invoke(app, ["classifier", "eval", "--split", "train"])
    assert wrong.exit_code == 2


def test_classify_without_a_model_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["classify", "--jsonl", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "rightsdesk classifier train" in result.stderr


# ---- the pipeline uses it, and learns from the DPO's corrections ------------------------------


async def test_tickets_get_types_language_scores_and_entities_from_the_model(
    settings: Settings, model: RightsClassifier
) -> None:
    enabled = settings.model_copy(
        update={"classifier": settings.classifier.model_copy(update={"enabled": True})}
    )
    desk = Desk.build(enabled)
    try:
        await deliver(desk, mail(f"请注销我的账号，身份证号 {ID_NUMBER}", subject="注销账号"))
        [ticket] = await desk.tickets.find()
        assert [str(t) for t in ticket.types] == ["account_deletion"]
        assert ticket.classification is not None
        assert ticket.classification["language"] == "zh"
        # (the ticket itself may still need review: no account was found to verify against)
        assert ticket.classification["needs_review"] is False
        assert ticket.classification is not None
        assert ticket.classification["scores"]["account_deletion"] >= 0.99
        assert {"label": "ID_NUMBER", "text": "110105********002X"}.items() <= next(
            e for e in ticket.classification["entities"] if e["label"] == "ID_NUMBER"
        ).items()
    finally:
        await desk.close()


async def test_relabels_become_training_examples(settings: Settings) -> None:
    from classifiers.corrections import load_corrections

    desk = Desk.build(settings)  # triage: every request an inquiry for the DPO
    try:
        await deliver(desk, mail("我要把资料搬走，换一家用", subject="数据"))
        [ticket] = await desk.tickets.find()
        await desk.tickets.relabel(ticket.public_id, "dpo", [RequestType.ACCESS])
        await desk.tickets.relabel(ticket.public_id, "dpo", [RequestType.PORTABILITY])
        [correction] = await load_corrections(desk.db)
        assert correction.labels == {"portability"}  # the last word counts
        assert correction.split == "train"
        assert correction.source == "correction"
        assert correction.subject == "数据"
        assert "搬走" in correction.text
    finally:
        await desk.close()


def test_train_with_corrections_reads_the_dpos_relabels(
    database_url: str, tmp_path: Path, model: RightsClassifier
) -> None:
    settings = Settings(
        database={"url": database_url},
        desk={"data_dir": tmp_path},
        classifier={"enabled": False},
    )

    async def relabelled() -> None:
        desk = Desk.build(settings)
        try:
            await deliver(desk, mail("把我的资料搬到新平台去", subject="数据"))
            [ticket] = await desk.tickets.find()
            await desk.tickets.relabel(ticket.public_id, "dpo", [RequestType.PORTABILITY])
        finally:
            await desk.close()

    asyncio.run(relabelled())
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    target = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        [
            *("--config", str(config), "classifier", "train", "--with-corrections"),
            *("--epochs", "1", "--model", str(target), "--json"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "1 correction(s)" in result.stderr
    trained = RightsClassifier.load(target)
    assert trained.meta["corrections"] == 1


def test_the_vocabulary_does_not_grow_with_what_it_reads(model: RightsClassifier) -> None:
    """A service classifies for months: spaCy kept every new string (addresses, numbers),
    +37 MB over 20,000 messages of #15's sustained test. Each chunk is read in a memory zone."""
    model.classify("", "请删除我的数据")  # what is permanent is loaded by now
    before = len(model.nlp.vocab.strings)
    found = model.classify_many(
        [("", f"请删除我的数据 编号 zq{i}x{i * 7919} 邮箱 u{i}k@example.com") for i in range(50)]
    )
    assert len(model.nlp.vocab.strings) == before
    assert all(RequestType.ERASURE in c.types for c in found)
