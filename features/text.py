"""Synthetic free text: partner profiles, deal requirements, partner messages and partner names.

Pure functions of their arguments and a `numpy.random.Generator`. Each text draws one block of
uniforms up front and indexes phrase banks with it, so a text costs one generator call and a few
microseconds of Python (300k texts take seconds).

Product wording is unambiguous: no phrase of one product contains a phrase of another (compared
case-insensitively), so a test or a baseline can tell which products a text mentions by substring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TypeVar

import numpy as np

from features import schema

T = TypeVar("T")

# --- phrase banks -------------------------------------------------------------------------------

PRODUCT_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "firewall": (
            "next-generation firewall",
            "perimeter security",
            "NGFW refresh",
            "firewall consolidation",
            "network threat prevention",
        ),
        "sd-wan": (
            "SD-WAN",
            "branch connectivity",
            "WAN modernisation",
            "secure access service edge",
            "software-defined WAN",
        ),
        "endpoint-security": (
            "endpoint protection",
            "EDR rollout",
            "antivirus replacement",
            "device security",
            "endpoint detection and response",
        ),
        "identity-access": (
            "identity and access management",
            "single sign-on",
            "zero-trust identity",
            "privileged access management",
            "MFA rollout",
        ),
        "managed-detection": (
            "managed detection and response",
            "24/7 SOC monitoring",
            "MDR service",
            "managed threat hunting",
            "security operations as a service",
        ),
        "cloud-migration": (
            "cloud migration",
            "lift-and-shift to Azure",
            "AWS landing zone",
            "data-centre exit",
            "cloud modernisation",
        ),
        "data-backup": (
            "backup and recovery",
            "disaster recovery",
            "ransomware-proof backups",
            "immutable backup",
            "business continuity",
        ),
        "storage": (
            "primary storage",
            "all-flash arrays",
            "storage consolidation",
            "hybrid cloud storage",
            "object storage",
        ),
        "collaboration": (
            "unified communications",
            "Microsoft Teams rollout",
            "video conferencing",
            "contact centre",
            "collaboration suite",
        ),
        "data-analytics": (
            "data analytics",
            "BI dashboards",
            "data warehouse",
            "analytics platform",
            "data lakehouse",
        ),
        "erp-integration": (
            "ERP integration",
            "SAP S/4HANA migration",
            "ERP implementation",
            "supply-chain system integration",
            "finance system integration",
        ),
        "networking": (
            "campus networking",
            "Wi-Fi 6 rollout",
            "switching and routing",
            "network refresh",
            "LAN upgrade",
        ),
    }
)

# Plural noun phrases for a segment ("we serve ...").
SEGMENT_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "smb": ("small businesses", "SMB customers", "small and medium businesses", "growing small companies"),
        "mid-market": ("mid-market companies", "mid-sized organisations", "mid-market customers"),
        "enterprise": ("large enterprises", "enterprise accounts", "global enterprises", "Fortune 500 customers"),
        "public-sector": ("public-sector agencies", "government and public bodies", "municipalities and agencies"),
    }
)
# Adjectives for a segment ("a mid-market retail customer").
SEGMENT_LABELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "smb": ("SMB", "small-business", "small"),
        "mid-market": ("mid-market", "mid-sized"),
        "enterprise": ("enterprise", "large enterprise", "global"),
        "public-sector": ("public-sector", "state and local"),
    }
)
INDUSTRIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "private": (
            "manufacturing",
            "healthcare",
            "retail",
            "financial services",
            "logistics",
            "professional services",
            "energy",
            "media",
            "hospitality",
            "insurance",
        ),
        "public-sector": ("government", "education", "public healthcare", "municipal services", "defence"),
    }
)
REGION_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "na-east": ("the US East Coast", "North America East", "the eastern US and Canada"),
        "na-west": ("the US West Coast", "North America West", "California and the Pacific Northwest"),
        "latam": ("Latin America", "LATAM", "Mexico and South America"),
        "uk-ie": ("the UK and Ireland", "UK & Ireland", "Britain and Ireland"),
        "dach": ("DACH", "Germany, Austria and Switzerland", "the DACH region"),
        "nordics": ("the Nordics", "Scandinavia and Finland", "the Nordic countries"),
        "apac-anz": ("Australia and New Zealand", "ANZ", "Australia/NZ"),
        "apac-sea": ("Southeast Asia", "Singapore and Southeast Asia", "SEA"),
    }
)
TIER_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "registered": ("registered", "authorised"),
        "silver": ("Silver", "Silver-tier"),
        "gold": ("Gold", "Gold-certified"),
        "platinum": ("Platinum", "Platinum-level", "top-tier Platinum"),
    }
)

POSITIVE_PHRASES: tuple[str, ...] = (
    "great quarter for us",
    "pipeline is growing nicely",
    "the joint campaign generated strong leads",
    "our team just completed the new certification",
    "customer feedback on the last rollout has been excellent",
    "we want to expand into the new product line",
    "thanks for the quick help on the last deal",
    "we closed two deals ahead of plan",
    "looking forward to the partner summit",
    "the MDF program worked really well for us",
    "we are hiring two more presales engineers for your portfolio",
)
NEUTRAL_PHRASES: tuple[str, ...] = (
    "please send the updated price list",
    "can we schedule the quarterly review",
    "requesting access to the demo environment",
    "following up on the deal registration",
    "question about the renewal process",
    "sharing our forecast for next quarter",
    "confirming attendance for the webinar",
    "please update our contact details",
    "we need the latest datasheets",
    "checking the status of our support case",
)
NEGATIVE_PHRASES: tuple[str, ...] = (
    "reconsidering our focus on this product line",
    "no response from channel team for weeks",
    "deal registration was rejected again",
    "margins no longer justify the effort",
    "frustrated with the lead quality",
    "we lost another deal to direct sales",
    "the partner portal keeps failing",
    "we are shifting resources to another vendor",
    "still waiting on the MDF reimbursement",
    "escalations are not being answered",
    "our sales team has lost interest",
    "we may not renew our partner agreement",
)

_PROFILE_OPENINGS: tuple[str, ...] = (
    "{name} is {tier_article} partner specialising in {products} across {regions}.",
    "{name} delivers {products} for customers in {regions}.",
    "As {tier_article} partner, {name} focuses on {products} in {regions}.",
    "{name}: {products} for organisations across {regions}.",
    "Serving {regions}, {name} helps clients with {products}.",
    "{name} ({tier} partner) designs, deploys and runs {products} throughout {regions}.",
)
_PROFILE_FOCUS: tuple[str, ...] = (
    "We work mostly with {segment} in {industry}.",
    "Our focus is {industry} and {segment}.",
    "Trusted by {segment} in {industry} and {industry_2}.",
    "Most of our customers are {segment}, especially in {industry}.",
)
_PROFILE_FLUFF: tuple[str, ...] = (
    "Certified engineers and 24/7 support.",
    "Award-winning customer success team.",
    "Fast deployments, fixed-price projects.",
    "Local presence, global reach.",
    "Your trusted advisor for digital transformation.",
)
_REQUIREMENT_TEMPLATES: tuple[str, ...] = (
    "{Segment} {industry} customer in {region} needs {products}.",
    "Looking for a partner to deliver {products} for {segment_article} {industry} organisation in {region}.",
    "{Industry} account ({segment}, {region}) requires {products}.",
    "Customer wants {products}; {segment} {industry} company in {region}.",
    "RFP from {segment_article} {industry} organisation in {region}: {products}.",
    "Opportunity: {products} at {segment_article} {industry} customer, {region}.",
)
_URGENCY_PHRASES: tuple[str, ...] = (
    "decision expected this quarter",
    "urgent: current contract expires soon",
    "competitive evaluation under way",
    "go-live targeted within six months",
    "board-level priority",
)
_CHANNEL_WRAPPERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "email": ("Hi team! {body} Thanks.", "Hello. {body} Best regards.", "{body} Kind regards."),
        "ticket": ("[Ticket] {body}", "Support request: {body}", "Case opened: {body}"),
        "qbr_note": ("QBR notes: {body}", "Quarterly review: {body}", "Partner review summary: {body}"),
    }
)
_NAME_STEMS: tuple[str, ...] = (
    "North",
    "Blue",
    "Iron",
    "Silver",
    "Bright",
    "Clear",
    "Summit",
    "Harbor",
    "Cedar",
    "Vertex",
    "Apex",
    "Nova",
    "Polar",
    "Red",
    "Stone",
    "Swift",
    "Terra",
    "Core",
    "Prime",
    "Atlas",
)
_NAME_ROOTS: tuple[str, ...] = (
    "wind",
    "peak",
    "gate",
    "bridge",
    "field",
    "stream",
    "path",
    "line",
    "point",
    "wave",
    "forge",
    "rock",
    "light",
    "ridge",
    "shore",
)
_NAME_KINDS: tuple[str, ...] = (
    "Networks",
    "Systems",
    "Solutions",
    "IT",
    "Technologies",
    "Consulting",
    "Digital",
    "Cloud",
    "Secure",
    "Integration",
    "Data",
    "Group",
)
_LEGAL_FORMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "na-east": ("Inc.", "LLC"),
        "na-west": ("Inc.", "LLC"),
        "latam": ("S.A.", "S.A. de C.V.", "Ltda."),
        "uk-ie": ("Ltd", "plc"),
        "dach": ("GmbH", "AG"),
        "nordics": ("AB", "AS", "Oy"),
        "apac-anz": ("Pty Ltd", "Ltd"),
        "apac-sea": ("Pte Ltd", "Sdn Bhd"),
    }
)

# Each text draws this many uniforms at once; `_Draws` refills if a text needs more.
_DRAWS_PER_TEXT = 24
# Half-width of the uniform jitter on sentiment before a phrase bank is chosen: texts follow the
# sentiment monotonically but noisily.
_SENTIMENT_JITTER = 0.3
_SENTIMENT_CUTOFF = 0.2


class _Draws:
    """Uniforms in [0, 1) handed out one at a time from pre-drawn blocks of one generator."""

    __slots__ = ("_rng", "_values")

    def __init__(self, rng: np.random.Generator, count: int = _DRAWS_PER_TEXT) -> None:
        self._rng = rng
        # Reversed so that pop() hands them out in drawing order.
        self._values: list[float] = rng.random(count).tolist()[::-1]

    def uniform(self) -> float:
        if not self._values:
            self._values = self._rng.random(_DRAWS_PER_TEXT).tolist()[::-1]
        return self._values.pop()

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.uniform() * len(options))]

    def shuffled(self, items: Sequence[T]) -> list[T]:
        """A uniformly random permutation (Fisher-Yates)."""
        result = list(items)
        for i in range(len(result) - 1, 0, -1):
            j = int(self.uniform() * (i + 1))
            result[i], result[j] = result[j], result[i]
        return result


def _join_phrases(phrases: Sequence[str]) -> str:
    """`["a", "b", "c"] -> "a, b and c"`."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _with_article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _money(amount: float) -> str:
    """USD in CRM shorthand: 84000 -> "$84k", 1250000 -> "$1.2M"."""
    if amount >= 1e6:
        return f"${amount / 1e6:.1f}M"
    return f"${amount / 1e3:.0f}k"


def _industries(segment: str) -> tuple[str, ...]:
    return INDUSTRIES["public-sector" if segment == "public-sector" else "private"]


# --- public API ---------------------------------------------------------------------------------


def partner_profile_text(
    rng: np.random.Generator,
    name: str,
    strong_products: Sequence[str],
    weak_mentions: Sequence[str],
    regions: Sequence[str],
    tier: str,
    segment: str | None = None,
) -> str:
    """A 1-3 sentence marketing profile.

    Mentions each of `strong_products` with probability 0.8 (at least the first one, so pass
    them strongest first), every product in `weak_mentions` (claims it is not good at: marketing
    fluff), all `regions` and usually a customer focus: `segment` wording when given, else a
    random segment. Products appear as random phrases from `PRODUCT_PHRASES` in random order.
    """
    draws = _Draws(rng)
    kept = [product for product in strong_products if draws.chance(0.8)] or list(strong_products[:1])
    products = draws.shuffled([*kept, *weak_mentions])
    product_text = _join_phrases([draws.pick(PRODUCT_PHRASES[product]) for product in products])
    region_text = _join_phrases([draws.pick(REGION_PHRASES[region]) for region in regions])
    tier_word = draws.pick(TIER_PHRASES[tier])
    sentences = [
        draws.pick(_PROFILE_OPENINGS).format(
            name=name,
            tier=tier_word,
            tier_article=_with_article(tier_word),
            products=product_text,
            regions=region_text,
        )
    ]
    if draws.chance(0.75):
        focus_segment = segment if segment is not None else draws.pick(schema.SEGMENTS)
        industries = _industries(focus_segment)
        sentences.append(
            draws.pick(_PROFILE_FOCUS).format(
                segment=draws.pick(SEGMENT_PHRASES[focus_segment]),
                industry=draws.pick(industries),
                industry_2=draws.pick(industries),
            )
        )
    if draws.chance(0.3):
        sentences.append(draws.pick(_PROFILE_FLUFF))
    return " ".join(sentences)


def deal_requirement_text(
    rng: np.random.Generator, products: Sequence[str], segment: str, region: str, amount: float
) -> str:
    """A CRM requirement sentence for a deal of `amount` USD.

    Mentions the needed `products` via random phrases (for multi-product deals one product is
    left out with probability 0.15), the segment and an industry, the region, and sometimes the
    budget (probability 0.4) and an urgency cue (probability 0.3).
    """
    draws = _Draws(rng)
    mentioned = list(products)
    if len(mentioned) > 1 and draws.chance(0.15):
        del mentioned[int(draws.uniform() * len(mentioned))]
    industry = draws.pick(_industries(segment))
    segment_label = draws.pick(SEGMENT_LABELS[segment])
    sentence = draws.pick(_REQUIREMENT_TEMPLATES).format(
        Segment=segment_label[:1].upper() + segment_label[1:],
        segment=segment_label,
        segment_article=_with_article(segment_label),
        industry=industry,
        Industry=industry[:1].upper() + industry[1:],
        region=draws.pick(REGION_PHRASES[region]),
        products=_join_phrases([draws.pick(PRODUCT_PHRASES[product]) for product in mentioned]),
    )
    extras = []
    if draws.chance(0.4):
        extras.append(f"budget around {_money(amount)}")
    if draws.chance(0.3):
        extras.append(draws.pick(_URGENCY_PHRASES))
    if extras:
        sentence = f"{sentence[:-1]}; {'; '.join(extras)}."
    return sentence


def _sentiment_bank(draws: _Draws, sentiment: float) -> tuple[str, ...]:
    jittered = sentiment + _SENTIMENT_JITTER * (2.0 * draws.uniform() - 1.0)
    if jittered < -_SENTIMENT_CUTOFF:
        return NEGATIVE_PHRASES
    if jittered > _SENTIMENT_CUTOFF:
        return POSITIVE_PHRASES
    return NEUTRAL_PHRASES


def communication_text(rng: np.random.Generator, sentiment: float, channel: str) -> str:
    """A short partner message whose tone follows `sentiment` in [-1, 1] (-1 hostile, +1 happy).

    One or two phrases, each from the negative, neutral or positive bank chosen by `sentiment`
    plus uniform jitter of +-0.3, wrapped in a `channel` (schema.COMMUNICATION_CHANNELS) template.
    """
    draws = _Draws(rng)
    phrases = [draws.pick(_sentiment_bank(draws, sentiment))]
    if draws.chance(0.5):
        phrases.append(draws.pick(_sentiment_bank(draws, sentiment)))
    body = "; ".join(phrases)
    return draws.pick(_CHANNEL_WRAPPERS[channel]).format(body=body[:1].upper() + body[1:] + ".")


def partner_names(rng: np.random.Generator, home_regions: Sequence[str]) -> list[str]:
    """One company name per home region, e.g. "Northwind Networks GmbH". Names may repeat."""
    count = len(home_regions)
    stems = rng.integers(len(_NAME_STEMS), size=count).tolist()
    roots = rng.integers(len(_NAME_ROOTS), size=count).tolist()
    kinds = rng.integers(len(_NAME_KINDS), size=count).tolist()
    legal = rng.random(count).tolist()
    names = []
    for region, stem, root, kind, form_draw in zip(home_regions, stems, roots, kinds, legal, strict=True):
        forms = _LEGAL_FORMS[region]
        form = forms[int(form_draw * len(forms))]
        names.append(f"{_NAME_STEMS[stem]}{_NAME_ROOTS[root]} {_NAME_KINDS[kind]} {form}")
    return names


def mentioned_products(text_value: str) -> tuple[str, ...]:
    """The schema.PRODUCTS (in vocabulary order) whose `PRODUCT_PHRASES` occur in `text_value`, ignoring case."""
    lowered = text_value.lower()
    return tuple(
        product for product in schema.PRODUCTS if any(phrase.lower() in lowered for phrase in PRODUCT_PHRASES[product])
    )
