"""UTS #39 for identities (approvals/confusables.py), from Unicode 15.0.0's own data."""

from __future__ import annotations

import unicodedata

import pytest

from approvalgate.approvals import confusables, identity
from tests.support.paths import ROOT, THIRD_PARTY

FILES = ("confusables.txt", "Scripts.txt", "ScriptExtensions.txt", "PropertyValueAliases.txt")


@pytest.mark.parametrize("name", FILES)
def test_the_packaged_unicode_data_is_the_vendored_copy(name: str) -> None:
    packaged = ROOT / "schemas" / "unicode" / name
    assert packaged.read_bytes() == (THIRD_PARTY / "unicode" / name).read_bytes()
    assert f"{confusables.UNICODE_VERSION}" in packaged.read_text("utf-8")[:400]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("bob", "b\u043eb"),  # Cyrillic o
        ("bob", "b\u03bfb"),  # Greek omicron
        ("bob", "b\u0585b"),  # Armenian oh (the hand-made table of identity.py lacks it)
        ("jos\u00e9", "jose\u0301"),  # NFC and NFD
        ("alice", "\u0430\u0406\u0456\u0441\u0435"),  # whole Cyrillic
        ("paypal", "\u0440\u0430\u0443\u0440\u0430l"),
    ],
)
def test_look_alikes_share_a_skeleton(one: str, other: str) -> None:
    assert confusables.skeleton(one) == confusables.skeleton(other)


def test_different_names_do_not() -> None:
    assert confusables.skeleton("bob") != confusables.skeleton("bab")
    assert confusables.skeleton("Alice") != confusables.skeleton("alice")  # case is visible


@pytest.mark.parametrize(
    ("identity", "scripts"),
    [
        ("bob@example.com", ()),
        ("\u0438\u0432\u0430\u043d@example.com", ()),  # Cyrillic name, Latin domain
        ("ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", ()),  # IDN domain
        ("oidc:\u5c71\u7530\u305f\u308d\u3046@example.jp", ()),  # Han + Hiragana
        ("tanaka\u5c71\u7530", ()),  # Latin + Han: Highly Restrictive allows it
        ("x\u30fcy", ()),  # a Script_Extensions character (Hira, Kana) with Latin
        ("jose\u0301", ()),  # a combining mark is Inherited
        ("b\u043eb", ("Latn", "Cyrl")),
        ("b-\u043e-b", ("Latn", "Cyrl")),  # a hyphen does not make two parts
        ("\u03a9mega", ("Grek", "Latn")),
        ("\uae40kim\u5c71", ()),  # Latin, Hangul, Han: Korean
        ("\u0438van", ("Cyrl", "Latn")),
    ],
)
def test_each_part_is_in_one_script(identity: str, scripts: tuple[str, ...]) -> None:
    found = tuple(s for p in confusables.parts(identity) for s in confusables.mixed_scripts(p))
    assert found == scripts


def test_shown_names_every_character_outside_ascii() -> None:
    assert confusables.shown("bob@example.com") == "bob@example.com"
    assert confusables.shown("b\u043eb") == 'b\u043eb ["b\\u043eb" (CYRILLIC SMALL LETTER O)]'
    assert confusables.shown("jose\u0301") == (
        'jose\u0301 ["jose\\u0301" (COMBINING ACUTE ACCENT)]'
    )


def test_the_small_capitals_table_is_every_latin_small_capital() -> None:
    derived = {}
    for cp in range(0x80, 0x30000):
        name = unicodedata.name(chr(cp), "")
        letter = name.removeprefix("LATIN LETTER SMALL CAPITAL ")
        if name.startswith("LATIN LETTER SMALL CAPITAL ") and len(letter) == 1:
            derived[cp] = letter.lower()
    assert derived == identity.SMALL_CAPITALS


@pytest.mark.parametrize(
    "spelt",
    [
        "b\u0585b",  # Armenian oh
        "b\u03bfb",  # Greek omicron
        "\u0299\u1d0f\u0299",  # small capitals
        "BOB",
        "bob\u200b",  # an invisible character
        "oidc:b\u043eb",  # a prefix and a Cyrillic o
    ],
)
def test_a_look_alike_username_is_the_same_person(spelt: str) -> None:
    assert identity.person_key("bob") in identity.person_keys(spelt)


def test_other_names_are_other_persons() -> None:
    assert identity.person_keys("bab").isdisjoint(identity.person_keys("bob"))
    assert identity.person_keys("\u0438\u0432\u0430\u043d").isdisjoint(identity.person_keys("ivan"))


def test_large_authors_a_requester_writes_are_not_kept_by_the_caches() -> None:
    """A run's author annotation is the requester's text, up to the API server's 256 KiB of
    annotations: decide() compares it as a person on every admission (dry runs too), and the
    per-username caches kept every one (4096 of them: about 2.5 GB in the webhook)."""
    import gc
    import json
    import tracemalloc

    from approvalgate.approvals import records
    from approvalgate.approvals.decide import decide
    from tests.support.corpus import load_case

    case = load_case("approve-two-distinct")
    annotations = case.request["object"]["metadata"]["annotations"]
    tracemalloc.start()
    try:
        for i in range(20):
            annotations[records.AUTHOR_ANNOTATION] = f"{i}" + "a\u0430" * 25_000
            request = json.loads(json.dumps(case.request))
            assert decide(request, case.bundle, case.now).allowed
        del request
        annotations.pop(records.AUTHOR_ANNOTATION)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # before: about 0.15 MB kept per author (3 MB here); now the last four at most
    assert held < 1_500_000, f"{held / 1e6:.1f} MB kept after 20 authors of 50 K characters"
