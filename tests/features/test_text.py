"""Phrase banks and text generators of features.text: coverage, determinism, what texts mention."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from features import schema, text

DRAWS = 300


def test_phrase_banks_cover_the_vocabularies() -> None:
    assert set(text.PRODUCT_PHRASES) == set(schema.PRODUCTS)
    assert all(4 <= len(phrases) <= 6 for phrases in text.PRODUCT_PHRASES.values())
    assert set(text.SEGMENT_PHRASES) == set(schema.SEGMENTS) == set(text.SEGMENT_LABELS)
    assert set(text.REGION_PHRASES) == set(schema.REGIONS)
    assert set(text.TIER_PHRASES) == set(schema.TIERS)


def test_product_phrases_are_unambiguous() -> None:
    for product_a, product_b in permutations(schema.PRODUCTS, 2):
        for phrase_a in text.PRODUCT_PHRASES[product_a]:
            for phrase_b in text.PRODUCT_PHRASES[product_b]:
                assert phrase_a.lower() not in phrase_b.lower(), (phrase_a, phrase_b)
    other_banks = [
        *text.NEGATIVE_PHRASES,
        *text.NEUTRAL_PHRASES,
        *text.POSITIVE_PHRASES,
        *(phrase for bank in text.SEGMENT_PHRASES.values() for phrase in bank),
        *(phrase for bank in text.INDUSTRIES.values() for phrase in bank),
        *(phrase for bank in text.REGION_PHRASES.values() for phrase in bank),
    ]
    assert all(text.mentioned_products(phrase) == () for phrase in other_banks)


def test_texts_are_deterministic_per_seed() -> None:
    def sample(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [
            text.partner_profile_text(rng, "Acme IT Ltd", ["firewall", "sd-wan"], ["storage"], ["uk-ie"], "gold"),
            text.deal_requirement_text(rng, ["firewall", "networking"], "smb", "dach", 25_000.0),
            text.communication_text(rng, -0.5, "email"),
            *text.partner_names(rng, ["dach", "latam"]),
        ]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_profile_mentions_most_strong_products_and_every_weak_mention() -> None:
    rng = np.random.default_rng(0)
    strong = ["managed-detection", "endpoint-security", "identity-access"]
    profiles = [
        text.partner_profile_text(rng, "Acme IT Ltd", strong, ["storage"], ["uk-ie", "nordics"], "silver")
        for _ in range(DRAWS)
    ]
    mentions = [set(text.mentioned_products(profile)) for profile in profiles]
    for product in strong:
        assert 0.7 < np.mean([product in found for found in mentions]) < 0.95
    assert all("storage" in found for found in mentions)
    assert all(found & set(strong) for found in mentions)
    assert not any(found - {*strong, "storage"} for found in mentions)
    assert all(profile.count(".") <= 4 and "Acme IT Ltd" in profile for profile in profiles)


def test_profile_focus_uses_the_given_segment() -> None:
    rng = np.random.default_rng(1)
    profiles = [
        text.partner_profile_text(rng, "Acme", ["storage"], [], ["dach"], "gold", segment="public-sector")
        for _ in range(DRAWS)
    ]
    other_segments = [phrase for segment in ("smb", "enterprise") for phrase in text.SEGMENT_PHRASES[segment]]
    assert not any(phrase in profile for profile in profiles for phrase in other_segments)
    assert any(phrase in profile for profile in profiles for phrase in text.SEGMENT_PHRASES["public-sector"])


def test_requirement_mentions_the_deal_products_and_budget_sometimes() -> None:
    rng = np.random.default_rng(2)
    products = ["cloud-migration", "data-backup"]
    requirements = [
        text.deal_requirement_text(rng, products, "enterprise", "apac-sea", 1_250_000.0) for _ in range(DRAWS)
    ]
    mentions = [set(text.mentioned_products(requirement)) for requirement in requirements]
    assert all(found and found <= set(products) for found in mentions)
    assert 0.75 < np.mean([found == set(products) for found in mentions]) < 0.95
    assert 0.25 < np.mean(["$1.2M" in requirement for requirement in requirements]) < 0.55
    single = text.deal_requirement_text(rng, ["erp-integration"], "smb", "latam", 9_000.0)
    assert text.mentioned_products(single) == ("erp-integration",)


@pytest.mark.parametrize("channel", schema.COMMUNICATION_CHANNELS)
def test_communication_tone_follows_sentiment(channel: str) -> None:
    rng = np.random.default_rng(3)

    def share(sentiment: float, bank: tuple[str, ...]) -> float:
        messages = [text.communication_text(rng, sentiment, channel).lower() for _ in range(DRAWS)]
        return float(np.mean([any(phrase.lower() in message for phrase in bank) for message in messages]))

    assert share(-1.0, text.NEGATIVE_PHRASES) > 0.95
    assert share(1.0, text.NEGATIVE_PHRASES) == 0.0
    assert share(1.0, text.POSITIVE_PHRASES) > 0.95
    assert share(0.0, text.NEUTRAL_PHRASES) > 0.6
    assert share(-0.4, text.NEGATIVE_PHRASES) > share(0.0, text.NEGATIVE_PHRASES)


def test_partner_names_carry_a_regional_legal_form() -> None:
    names = text.partner_names(np.random.default_rng(4), ["dach"] * 50 + ["nordics"] * 50)
    assert all(name.endswith((" GmbH", " AG")) for name in names[:50])
    assert all(name.endswith((" AB", " AS", " Oy")) for name in names[50:])
