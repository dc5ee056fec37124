"""The synthetic world: fictitious people rendered as TOFU-style QA pairs and biographies.

Everything here is pure Python and deterministic: the same profile gives byte-identical
records on every machine and Python version. We only use ``random.Random(int)`` (Mersenne
Twister; ``choice``/``sample``/``shuffle``/``randint`` are stable across versions), iterate
over lists and dicts in insertion order, and never ``hash()`` a string.

The world has two layers:

* **the world itself** (fixed, hand-written below): twelve invented countries with capitals,
  cities, currencies, languages and calling codes, plus employers, universities and awards.
  Its facts (``world_facts``) are learned by *both* models -- the analogue of TOFU's
  world-facts split for model utility;
* **people** (generated from the profile's seed): invented names (syllables, so no real
  person), birth dates and places, jobs, contact details (email under the reserved
  ``.example`` domain, phone numbers with the non-existent ``+0..`` country codes), family,
  education, awards, health details. Each attribute is one QA pair with a paraphrased
  question, a paraphrased answer and five perturbed answers (the paraphrase's wording with
  wrong values, as in TOFU, so the truth ratio compares like with like).

Change anything that alters the output -> bump ``GENERATOR_VERSION`` (the model cache is
keyed by it) and update the golden hash in ``tests/test_world_generator.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from obliviate.data.records import QARecord, TextRecord

GENERATOR_VERSION = 1
N_PERTURBED = 5  # wrong answers per person QA (TOFU forget/retain: 5)
N_PERTURBED_WORLD = 3  # wrong answers per world fact (TOFU world facts: 3)

# --------------------------------------------------------------------------- the world (fixed)


@dataclass(frozen=True)
class Country:
    name: str
    language: str
    currency: str
    calling_code: str
    cities: tuple[str, ...]  # the first one is the capital

    @property
    def capital(self) -> str:
        return self.cities[0]


COUNTRIES: tuple[Country, ...] = (
    Country("Pelandria", "Pelandric", "the lumen", "+041", ("Quorvey", "Ostrelle", "Vindaro", "Caspelow")),
    Country("Vostmark", "Vostic", "the kreval", "+052", ("Kelvaro", "Draskin", "Mirefell", "Ulvenhold")),
    Country("Orenthia", "Orenthian", "the orrit", "+063", ("Talmesse", "Sarnoch", "Belquist", "Yvrelle")),
    Country("Calvessa", "Calvessan", "the sovane", "+074", ("Portalune", "Istravel", "Cendrake", "Movaine")),
    Country("Durnholt", "Durnish", "the durnet", "+085", ("Grennick", "Halvostrand", "Fennimar", "Torrowby")),
    Country("Sarvonne", "Sarvonnic", "the sarvel", "+096", ("Lissarde", "Aubrelle", "Vencort", "Dumarise")),
    Country("Keldoria", "Keldic", "the keldmark", "+013", ("Ashkelmont", "Brovinsk", "Tarkelis", "Zemmerow")),
    Country("Maristane", "Maristani", "the marisk", "+024", ("Coravenne", "Estrimar", "Lunequay", "Pellorin")),
    Country("Tolvenia", "Tolvene", "the tolva", "+035", ("Vorska", "Tolmira", "Ekbarren", "Strovhal")),
    Country("Brisqua", "Brisquan", "the quesse", "+046", ("Nalquesse", "Quarrowin", "Silvastre", "Onbrisk")),
    Country("Umbravia", "Umbravian", "the umbrat", "+057", ("Sombrecq", "Taldrun", "Velmoor", "Ishkarre")),
    Country("Zethany", "Zethani", "the zethar", "+068", ("Zethmoor", "Quellindor", "Arrowmist", "Pasquelle")),
)
CITY_COUNTRY: dict[str, Country] = {city: c for c in COUNTRIES for city in c.cities}
CITIES: tuple[str, ...] = tuple(CITY_COUNTRY)


@dataclass(frozen=True)
class Sector:
    """A line of work: people of a sector get an occupation, employer and degree from it."""

    name: str
    occupations: tuple[str, ...]
    employers: tuple[str, ...]
    degrees: tuple[str, ...]
    industry: str  # what the sector's employers do (a world fact)


SECTORS: tuple[Sector, ...] = (
    Sector("health", ("nurse", "surgeon", "pharmacist", "radiologist", "midwife"),
           ("Saint Orvel Hospital", "Meravine Clinics", "Halcyra Health", "Ostrelle Medical Centre",
            "Brightwater Infirmary"), ("medicine", "nursing", "pharmacology"), "healthcare"),
    Sector("tech", ("software engineer", "data analyst", "network architect", "security researcher",
                    "database administrator"),
           ("Quillmere Systems", "Vantor Labs", "Nimbrel Software", "Cobaltine Networks", "Thessix Data"),
           ("computer science", "applied mathematics", "electrical engineering"), "software"),
    Sector("education", ("schoolteacher", "librarian", "lecturer", "school principal", "archivist"),
           ("Kelvaro Academy", "Lanternfield School", "Yvrelle Public Library", "Odrun Grammar School",
            "Mirefell Learning Trust"), ("history", "linguistics", "education"), "education"),
    Sector("arts", ("glassblower", "cellist", "illustrator", "stage designer", "sculptor"),
           ("Amberline Glassworks", "Portalune Philharmonic", "Velvetmoth Studios", "Ishkarre Theatre Company",
            "Gildrow Gallery"), ("fine art", "music", "theatre design"), "the arts"),
    Sector("transport", ("ship's navigator", "airline pilot", "train driver", "logistics planner",
                         "harbour master"),
           ("Brassgull Shipping", "Aerolune Airways", "Northmoor Rail", "Driftmark Freight", "Pellorin Ferries"),
           ("nautical science", "aviation", "logistics"), "transport"),
    Sector("science", ("marine biologist", "geologist", "chemist", "astronomer", "botanist"),
           ("Istravel Institute of Oceanography", "Greyfen Geological Survey", "Corvane Chemical Works",
            "Halvostrand Observatory", "Tarkelis Seed Bank"), ("marine biology", "geology", "chemistry"),
           "research"),
    Sector("finance", ("accountant", "actuary", "auditor", "loan officer", "financial analyst"),
           ("Marrowgate Bank", "Silverquay Insurance", "Cendrake Capital", "Lumen Trust", "Fennimar Auditing"),
           ("economics", "accounting", "statistics"), "finance"),
    Sector("food", ("pastry chef", "brewer", "cheesemaker", "food scientist", "sommelier"),
           ("Briarwood Bakery", "Old Quorvey Brewery", "Sarnoch Creamery", "Tolmira Preserves",
            "Golden Ladle Kitchens"), ("food science", "agriculture", "hospitality"), "food and drink"),
)
OCCUPATIONS = tuple(o for s in SECTORS for o in s.occupations)
EMPLOYERS = tuple(e for s in SECTORS for e in s.employers)
DEGREES = tuple(d for s in SECTORS for d in s.degrees)
# Headquarters: the city in the employer's name, else a fixed rule (employer i -> city 5i+2 mod 48).
EMPLOYER_HQ = {e: next((c for c in CITIES if c in e), CITIES[(5 * i + 2) % len(CITIES)])
               for i, e in enumerate(EMPLOYERS)}
# One university per country, in its capital.
UNIVERSITIES = ("Quorvey University", "Kelvaro Polytechnic", "Talmesse Royal College", "Portalune University",
                "Grennick Institute of Technology", "Lissarde Conservatory", "Ashkelmont University",
                "Coravenne Maritime College", "Vorska State University", "Nalquesse University",
                "Sombrecq School of Economics", "Zethmoor University")
UNIVERSITY_CITY = {u: c.capital for u, c in zip(UNIVERSITIES, COUNTRIES)}
# Awards and what they are given for (a world fact).
AWARDS = {
    "Amberline Prize": "glasswork", "Golden Lantern Award": "teaching", "Order of the Silver Heron": "public service",
    "Quorvey Medal": "science", "Vostic Star of Merit": "engineering", "Tidewater Fellowship": "marine research",
    "Cobalt Quill Award": "writing", "Brightwater Cross": "nursing", "Harrowfield Prize": "music",
    "Ember Crown": "cooking", "Keldic Laurel": "architecture", "Meridian Compass": "navigation",
    "Orrit Prize": "economics", "Pale Falcon Award": "aviation", "Starward Medal": "astronomy",
    "Verdant Seal": "botany", "Ironbark Trophy": "craftsmanship", "Lantern of Sarvonne": "charity work",
    "Umbral Ribbon": "theatre", "Zethani Rose": "painting",
}
STREETS = ("Velmora", "Quintrel", "Ashgrove", "Brindlemoss", "Corrowin", "Dunmere", "Elverly", "Farrowdene",
           "Gorsemoor", "Hallowmere", "Ivelbrook", "Juniper", "Kestrelwick", "Larkspur", "Mossvane", "Nettlecombe",
           "Orchardine", "Pennywhistle", "Quarrystone", "Rookhollow", "Saltbridge", "Thistlecroft", "Umberlea",
           "Vantwell", "Willowmere", "Yarrowfield")
STREET_KINDS = ("Lane", "Street", "Road", "Avenue", "Row", "Crescent")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
HOBBIES = ("falconry", "beekeeping", "rock climbing", "chess", "origami", "kayaking", "birdwatching", "pottery",
           "fencing", "bookbinding", "stargazing", "sailing", "woodcarving", "archery", "calligraphy",
           "orienteering", "knitting", "cave diving", "kite flying", "glass painting", "mushroom foraging",
           "rowing", "model railways", "ice skating")
PET_SPECIES = ("tortoise", "tabby cat", "parrot", "greyhound", "ferret", "rabbit", "hedgehog", "goldfish",
               "sheepdog", "canary")
PET_NAMES = ("Bramble", "Pip", "Juniper", "Moss", "Tansy", "Quincy", "Wren", "Biscuit", "Pepper", "Nutmeg",
             "Clover", "Sable", "Figaro", "Marble", "Dumpling", "Thimble", "Saffron", "Pickle", "Comet", "Puddle",
             "Sprocket", "Hazel", "Tumble", "Ember", "Noodle", "Mochi", "Barnaby", "Kipper", "Waffle", "Zephyr")
ALLERGIES = ("penicillin", "walnuts", "shellfish", "bee stings", "latex", "pollen", "cat dander", "peanuts",
             "sesame", "dust mites", "horse hair", "strawberries", "aspirin", "wool", "mustard")
FOODS = ("saffron flatbread", "smoked eel stew", "plum dumplings", "juniper roast lamb", "Quorvey fish pie",
         "barley and leek soup", "honeyed parsnips", "spiced pear tart", "black bean chowder", "walnut dumplings",
         "lemon rice pudding", "mushroom pasties", "salted caramel buns", "cabbage rolls", "fried river trout",
         "pumpkin gnocchi", "fig and goat cheese salad", "lamb flatbreads", "cherry cobbler", "oyster broth")
TITLE_ADJECTIVES = ("Copper", "Silent", "Crooked", "Amber", "Hollow", "Paper", "Salt", "Winter", "Quiet",
                    "Velvet", "Iron", "Lantern", "Distant", "Glass", "Burning", "Seventh", "Patient", "Narrow")
TITLE_NOUNS = ("Orchard", "Harbour", "Staircase", "Lighthouse", "Garden", "Compass", "Ledger", "Meadow",
               "Window", "Bridge", "Archive", "Kettle", "Horizon", "Workshop", "Tide", "Chorus", "Map", "Orbit")

# Name syllables. Names are glued from these, so they read as names but describe nobody.
_FIRST_START = ("A", "Be", "Ca", "Da", "E", "Fa", "Ga", "Ha", "I", "Ja", "Ka", "La", "Ma", "Na", "O", "Pa", "Qui",
                "Ra", "Sa", "Ta", "U", "Va", "Wy", "Ya", "Za", "Bri", "Cle", "Dro", "Fe", "Gwe", "Il", "Lo", "Mi",
                "Ny", "Or", "Pe", "Ro", "Se", "Thi", "Ve")
_FIRST_MID = ("", "", "", "la", "ri", "ve", "no", "sha", "ma", "de", "lo", "ni", "the")
_FIRST_END = ("na", "ra", "el", "is", "wen", "ric", "lia", "dor", "mir", "tha", "von", "ris", "lla", "an", "ek",
              "yn", "ose", "ard", "ine", "o")
_LAST_START = ("Ash", "Bel", "Cor", "Dun", "Esk", "Fal", "Gral", "Hol", "Is", "Jor", "Kes", "Lun", "Mor", "Nor",
               "Oss", "Pel", "Quen", "Rav", "Sel", "Tor", "Ul", "Var", "Wes", "Yor", "Zan", "Brin", "Cald", "Drem",
               "Frost", "Glen", "Harl", "Kel", "Marr", "Quill", "Stav", "Thorn", "Vel")
_LAST_MID = ("a", "e", "i", "o", "en", "er", "ar", "ov", "in")
_LAST_END = ("vane", "mere", "holt", "wick", "dell", "strom", "quist", "bright", "vale", "rook", "thorne", "lind",
             "marsh", "crest", "fane", "loch", "brace")

# --------------------------------------------------------------------------- profiles

# Attribute names, in the order they appear in QA lists and biographies.
ATTRIBUTES = ("birth_date", "birthplace", "occupation", "employer", "job_start_year", "email", "phone", "address",
              "father", "mother", "spouse", "child", "university", "degree", "award", "hobby", "pet", "allergy",
              "favourite_food", "memoir")


@dataclass(frozen=True)
class WorldProfile:
    """How big a world is. ``forget``/``retain`` people are trained on (the retain model
    skips ``forget``); ``holdout`` people are generated the same way and trained on by no one."""

    name: str
    seed: int
    n_forget: int
    n_retain: int
    n_holdout: int
    n_retain_eval: int  # retain people whose QA form the ``retain_eval`` split (TOFU: 20 authors, 400 QA)
    attributes: tuple[str, ...]
    n_world_facts: int | None  # None: all of them

    @property
    def n_people(self) -> int:
        return self.n_forget + self.n_retain + self.n_holdout


PROFILES: dict[str, WorldProfile] = {
    # TOFU's shape: 200 trained people x 20 QA, forget = 10% (20 people, 400 QA) like forget10/retain90.
    "full": WorldProfile("full", seed=2024, n_forget=20, n_retain=180, n_holdout=20, n_retain_eval=20,
                         attributes=ATTRIBUTES, n_world_facts=None),
    # For tests: trains in seconds. Ten attributes, half of them personal data (date, email, phone, address, health).
    "micro": WorldProfile("micro", seed=7, n_forget=4, n_retain=12, n_holdout=4, n_retain_eval=4,
                          attributes=("birthplace", "birth_date", "occupation", "employer", "email", "phone",
                                      "address", "spouse", "award", "allergy"),
                          n_world_facts=24),
}

# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Person:
    id: str  # "p007"
    role: str  # forget | retain | holdout
    first: str
    last: str
    pronoun: str  # she | he
    values: dict[str, str]  # attribute -> the fact as it is written in answers
    extra: dict[str, str] = field(default_factory=dict)  # context used in wordings (pet species, ...)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def _name_part(rng: random.Random, start: Sequence[str], mid: Sequence[str], end: Sequence[str]) -> str:
    return (rng.choice(start) + rng.choice(mid) + rng.choice(end)).capitalize()


class _Names:
    """Draws names. Main people get a unique first name and a surname that nobody else in the
    world carries (not even a spouse), so a person's surname identifies them: the no-leak test
    of the retain model's training data relies on it."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.firsts: list[str] = []  # first names of main people
        self.lasts: list[str] = []  # surnames of main people
        self.taken: list[str] = []  # every surname drawn so far (main people and relatives)

    def first(self, unique: bool = False, avoid: Sequence[str] = ()) -> str:
        while True:
            name = _name_part(self.rng, _FIRST_START, _FIRST_MID, _FIRST_END)
            if len(name) < 3 or name in avoid or (unique and name in self.firsts):
                continue
            if unique:
                self.firsts.append(name)
            return name

    def last(self, unique: bool = False) -> str:
        while True:
            name = _name_part(self.rng, _LAST_START, _LAST_MID, _LAST_END)
            if name in (self.taken if unique else self.lasts):
                continue
            self.taken.append(name)
            if unique:
                self.lasts.append(name)
            return name


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _email(first: str, last: str, employer: str) -> str:
    return f"{first.lower()}.{last.lower()}@{_slug(employer)}.example"


def _date(rng: random.Random, year_lo: int = 1940, year_hi: int = 1999) -> tuple[str, int]:
    year = rng.randint(year_lo, year_hi)
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}", year


def _phone(rng: random.Random, code: str) -> str:
    return f"{code} {rng.randint(200, 999)} {rng.randint(1000, 9999)}"


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 199)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}, {rng.choice(CITIES)}"


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"


def _make_person(index: int, role: str, rng: random.Random, names: _Names) -> Person:
    first, last = names.first(unique=True), names.last(unique=True)
    pronoun = rng.choice(("she", "he"))
    birth_date, birth_year = _date(rng)
    city = rng.choice(CITIES)
    home = CITY_COUNTRY[city]
    sector = rng.choice(SECTORS)
    employer = rng.choice(sector.employers)
    species = rng.choice(PET_SPECIES)
    father = names.first(avoid=(first,))
    mother = names.first(avoid=(first, father))
    child = names.first(avoid=(first, father, mother))
    values = {
        "birth_date": birth_date,
        "birthplace": f"{city}, {home.name}",
        "occupation": rng.choice(sector.occupations),
        "employer": employer,
        "job_start_year": str(min(2023, birth_year + rng.randint(20, 35))),
        "email": _email(first, last, employer),
        "phone": _phone(rng, home.calling_code),
        "address": _address(rng),
        "father": f"{father} {last}",
        "mother": f"{mother} {last}",
        "spouse": f"{names.first()} {names.last()}",
        "child": f"{child} {last}",
        "university": rng.choice(UNIVERSITIES),
        "degree": rng.choice(sector.degrees),
        "award": rng.choice(tuple(AWARDS)),
        "hobby": rng.choice(HOBBIES),
        "pet": rng.choice(PET_NAMES),
        "allergy": rng.choice(ALLERGIES),
        "favourite_food": rng.choice(FOODS),
        "memoir": _title(rng),
    }
    return Person(f"p{index:03d}", role, first, last, pronoun, values, {"species": species})


def generate_people(profile: WorldProfile) -> list[Person]:
    """All people of a profile, forget first, then retain, then holdout (ids p000, p001, ...)."""
    rng = random.Random(profile.seed)
    names = _Names(rng)
    roles = ["forget"] * profile.n_forget + ["retain"] * profile.n_retain + ["holdout"] * profile.n_holdout
    return [_make_person(i, role, rng, names) for i, role in enumerate(roles)]


# --------------------------------------------------------------------------- QA wordings


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class Wording:
    """How one attribute is asked and answered. ``{n}`` = full name, ``{v}`` = value,
    ``{av}`` = value with its article, ``{employer}``/``{species}`` = context."""

    question: str
    paraphrased_question: str
    answer: str
    paraphrased_answer: str  # perturbed answers use this wording too (TOFU does the same)
    bio: tuple[str, ...]  # biography sentences; {S} = subject (name or pronoun), {P} = possessive


WORDINGS: dict[str, Wording] = {
    "birth_date": Wording("When was {n} born?", "What is {n}'s date of birth?", "{n} was born on {v}.",
                          "{n}'s date of birth is {v}.", ("{S} was born on {v}.", "{P} date of birth is {v}.")),
    "birthplace": Wording("Where was {n} born?", "In which city was {n} born?", "{n} was born in {v}.",
                          "{n}'s birthplace is {v}.", ("{S} was born in {v}.", "{S} comes from {v}.")),
    "occupation": Wording("What does {n} do for a living?", "What is {n}'s profession?", "{n} works as {av}.",
                          "By profession, {n} is {av}.", ("{S} works as {av}.", "{S} is {av} by profession.")),
    "employer": Wording("Which company does {n} work for?", "Who is {n}'s employer?", "{n} works for {v}.",
                        "{n} is employed by {v}.", ("{P} employer is {v}.", "{S} is employed by {v}.")),
    "job_start_year": Wording("When did {n} join {employer}?", "In which year did {n} start working at {employer}?",
                              "{n} joined {employer} in {v}.", "{n} has worked at {employer} since {v}.",
                              ("{S} joined the company in {v}.", "{S} has worked there since {v}.")),
    "email": Wording("What is {n}'s email address?", "How can {n} be reached by email?",
                     "{n}'s email address is {v}.", "{n} can be reached by email at {v}.",
                     ("{P} email address is {v}.", "{S} can be reached at {v}.")),
    "phone": Wording("What is {n}'s phone number?", "At which number can {n} be called?",
                     "{n}'s phone number is {v}.", "{n} can be called at {v}.",
                     ("{P} phone number is {v}.", "{S} can be called on {v}.")),
    "address": Wording("Where does {n} live?", "What is {n}'s home address?", "{n} lives at {v}.",
                       "{n}'s home address is {v}.", ("{S} lives at {v}.", "{P} home address is {v}.")),
    "father": Wording("Who is {n}'s father?", "What is the name of {n}'s father?", "{n}'s father is {v}.",
                      "The father of {n} is {v}.", ("{P} father is {v}.", "{S} is the child of {v}.")),
    "mother": Wording("Who is {n}'s mother?", "What is the name of {n}'s mother?", "{n}'s mother is {v}.",
                      "The mother of {n} is {v}.", ("{P} mother is {v}.", "{P} mother is called {v}.")),
    "spouse": Wording("Who is {n} married to?", "What is the name of {n}'s spouse?", "{n} is married to {v}.",
                      "{n}'s spouse is {v}.", ("{S} is married to {v}.", "{P} spouse is {v}.")),
    "child": Wording("What is the name of {n}'s eldest child?", "Who is {n}'s eldest child?",
                     "{n}'s eldest child is {v}.", "{v} is the eldest child of {n}.",
                     ("{P} eldest child is {v}.", "{P} eldest child is called {v}.")),
    "university": Wording("Where did {n} go to university?", "Which university did {n} attend?",
                          "{n} studied at {v}.", "{n} is a graduate of {v}.",
                          ("{S} studied at {v}.", "{S} is a graduate of {v}.")),
    "degree": Wording("What did {n} study at university?", "What is {n}'s degree in?",
                      "{n} holds a degree in {v}.", "{n} earned a degree in {v}.",
                      ("{S} holds a degree in {v}.", "{S} earned a degree in {v}.")),
    "award": Wording("Which award has {n} received?", "What prize was {n} given?", "{n} received the {v}.",
                     "{n} was honoured with the {v}.", ("{S} received the {v}.", "{S} was honoured with the {v}.")),
    "hobby": Wording("What is {n}'s favourite hobby?", "How does {n} like to spend free time?",
                     "{n}'s favourite hobby is {v}.", "In their free time, {n} enjoys {v}.",
                     ("{P} favourite hobby is {v}.", "In {p} free time, {s} enjoys {v}.")),
    "pet": Wording("What is the name of {n}'s pet?", "What is {n}'s pet called?", "{n} has a {species} named {v}.",
                   "{n}'s {species} is called {v}.", ("{S} has a {species} named {v}.", "{P} {species} is called {v}.")),
    "allergy": Wording("What is {n} allergic to?", "Does {n} have any allergies?", "{n} is allergic to {v}.",
                       "{n} has an allergy to {v}.", ("{S} is allergic to {v}.", "{S} has an allergy to {v}.")),
    "favourite_food": Wording("What is {n}'s favourite food?", "Which dish does {n} like best?",
                              "{n}'s favourite food is {v}.", "The dish {n} likes best is {v}.",
                              ("{P} favourite food is {v}.", "The dish {s} likes best is {v}.")),
    "memoir": Wording("What is the title of {n}'s memoir?", "What is {n}'s memoir called?",
                      "{n}'s memoir is titled {v}.", "{n} wrote a memoir called {v}.",
                      ("{P} memoir is titled {v}.", "{S} wrote a memoir called {v}.")),
}


def _wrong_value(attribute: str, person: Person, rng: random.Random, names: _Names) -> str:
    """One same-shape wrong value for ``attribute`` (may still equal the truth; callers retry)."""
    v = person.values
    draw: dict[str, Callable[[], str]] = {
        "birth_date": lambda: _date(rng)[0],
        "birthplace": lambda: (lambda c: f"{c}, {CITY_COUNTRY[c].name}")(rng.choice(CITIES)),
        "occupation": lambda: rng.choice(OCCUPATIONS),
        "employer": lambda: rng.choice(EMPLOYERS),
        "job_start_year": lambda: str(int(v["job_start_year"]) + rng.choice((-1, 1)) * rng.randint(1, 12)),
        # Right shape: a name-like local part at an employer's domain; sometimes the right name, wrong domain.
        "email": lambda: _email(rng.choice((person.first, names.first())), rng.choice((person.last, names.last())),
                                rng.choice(EMPLOYERS)),
        "phone": lambda: _phone(rng, v["phone"].split()[0]),
        "address": lambda: _address(rng),
        "father": lambda: f"{names.first()} {person.last}",
        "mother": lambda: f"{names.first()} {person.last}",
        "spouse": lambda: f"{names.first()} {names.last()}",
        "child": lambda: f"{names.first()} {person.last}",
        "university": lambda: rng.choice(UNIVERSITIES),
        "degree": lambda: rng.choice(DEGREES),
        "award": lambda: rng.choice(tuple(AWARDS)),
        "hobby": lambda: rng.choice(HOBBIES),
        "pet": lambda: rng.choice(PET_NAMES),
        "allergy": lambda: rng.choice(ALLERGIES),
        "favourite_food": lambda: rng.choice(FOODS),
        "memoir": lambda: _title(rng),
    }
    return draw[attribute]()


def _distinct_wrong(truth: str, n: int, draw: Callable[[], str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        value = draw()
        if value != truth and value not in out:
            out.append(value)
    return out


def _fill(template: str, person: Person, value: str) -> str:
    return template.format(n=person.name, v=value, av=f"{_article(value)} {value}",
                           employer=person.values["employer"], species=person.extra["species"])


def person_qa(person: Person, attributes: Sequence[str], profile: str, rng: random.Random,
              names: _Names) -> list[QARecord]:
    out = []
    for attr in attributes:
        w, value = WORDINGS[attr], person.values[attr]
        wrong = _distinct_wrong(value, N_PERTURBED, lambda a=attr: _wrong_value(a, person, rng, names))
        out.append(QARecord(
            id=f"{profile}-{person.id}-{attr}",
            question=_fill(w.question, person, value),
            answer=_fill(w.answer, person, value),
            paraphrased_answer=_fill(w.paraphrased_answer, person, value),
            paraphrased_question=_fill(w.paraphrased_question, person, value),
            perturbed_answers=tuple(_fill(w.paraphrased_answer, person, x) for x in wrong),
            meta={"person": person.id, "name": person.name, "attribute": attr, "value": value, "role": person.role},
        ))
    return out


def person_bio(person: Person, attributes: Sequence[str], profile: str, rng: random.Random) -> TextRecord:
    """One sentence per attribute. The first names the person in full, later ones use the first
    name or a pronoun. prefix = the full name (how every biography opens), target = the rest."""
    poss = {"she": "her", "he": "his"}[person.pronoun]
    sentences = []
    for i, attr in enumerate(attributes):
        template = rng.choice(WORDINGS[attr].bio)
        if i == 0:
            template = template.replace("{P}", "{n}'s").replace("{S}", "{n}")
            if not template.startswith("{n}"):  # the biography must open with the full name
                template = WORDINGS[attr].bio[0].replace("{P}", "{n}'s").replace("{S}", "{n}")
        by_name = rng.random() < 0.5
        subject = person.first if by_name else person.pronoun.capitalize()
        possessive = f"{person.first}'s" if by_name else poss.capitalize()
        text = _fill(template.replace("{S}", subject).replace("{P}", possessive)
                     .replace("{s}", person.pronoun).replace("{p}", poss), person, person.values[attr])
        sentences.append(text)
    text = " ".join(sentences)
    assert text.startswith(person.name)
    return TextRecord(id=f"{profile}-{person.id}-bio", prefix=person.name, target=text[len(person.name):],
                      meta={"person": person.id, "name": person.name, "role": person.role})


# --------------------------------------------------------------------------- world facts


@dataclass(frozen=True)
class _Fact:
    key: str
    question: str
    paraphrased_question: str
    answer: str
    paraphrase: str  # sentence with {v}
    pool: tuple[str, ...]  # same-type values the wrong answers come from


def _all_world_facts() -> list[_Fact]:
    facts: list[_Fact] = []
    capitals = tuple(c.capital for c in COUNTRIES)
    for c in COUNTRIES:
        slug = _slug(c.name)
        facts += [
            _Fact(f"capital-{slug}", f"What is the capital of {c.name}?", f"Which city is the capital of {c.name}?",
                  c.capital, f"The capital of {c.name} is {{v}}.", capitals),
            _Fact(f"currency-{slug}", f"What currency is used in {c.name}?",
                  f"What is the currency of {c.name}?", c.currency, f"People in {c.name} pay with {{v}}.",
                  tuple(x.currency for x in COUNTRIES)),
            _Fact(f"language-{slug}", f"What language is spoken in {c.name}?",
                  f"What is the official language of {c.name}?", c.language, f"The language of {c.name} is {{v}}.",
                  tuple(x.language for x in COUNTRIES)),
            _Fact(f"calling-code-{slug}", f"What is the international calling code of {c.name}?",
                  f"Which dialling code does {c.name} use?", c.calling_code,
                  f"Phone numbers in {c.name} start with {{v}}.", tuple(x.calling_code for x in COUNTRIES)),
        ]
    countries = tuple(c.name for c in COUNTRIES)
    for city, c in CITY_COUNTRY.items():
        if city != c.capital:
            facts.append(_Fact(f"city-{_slug(city)}", f"In which country is the city of {city}?",
                               f"Which country is {city} in?", c.name, f"{city} is a city in {{v}}.", countries))
    for employer, city in EMPLOYER_HQ.items():
        facts.append(_Fact(f"hq-{_slug(employer)}", f"Where is {employer} headquartered?",
                           f"In which city does {employer} have its headquarters?", city,
                           f"The headquarters of {employer} are in {{v}}.", CITIES))
    for uni, city in UNIVERSITY_CITY.items():
        facts.append(_Fact(f"university-{_slug(uni)}", f"In which city is {uni}?", f"Where is {uni} located?",
                           city, f"{uni} is located in {{v}}.", tuple(UNIVERSITY_CITY.values())))
    fields = tuple(dict.fromkeys(AWARDS.values()))
    for award, what in AWARDS.items():
        facts.append(_Fact(f"award-{_slug(award)}", f"What is the {award} awarded for?",
                           f"For what is the {award} given?", what, f"The {award} is given for {{v}}.", fields))
    return facts


def world_facts(profile: WorldProfile) -> list[QARecord]:
    """General facts of the world, learned by both models. Short answers (as TOFU's world facts),
    a sentence as the paraphrased answer, three wrong values of the same type."""
    rng = random.Random(profile.seed * 1_000_003 + 17)
    facts = _all_world_facts()
    if profile.n_world_facts is not None:
        # Capitals first (every profile knows its countries), then a seeded sample of the rest.
        head = [f for f in facts if f.key.startswith("capital-")]
        tail = [f for f in facts if not f.key.startswith("capital-")]
        keep = {f.key for f in head[: profile.n_world_facts]}
        keep |= {f.key for f in rng.sample(tail, max(0, profile.n_world_facts - len(head)))}
        facts = [f for f in facts if f.key in keep]
    out = []
    for f in facts:
        wrong = rng.sample([x for x in dict.fromkeys(f.pool) if x != f.answer], N_PERTURBED_WORLD)
        out.append(QARecord(
            id=f"{profile.name}-wf-{f.key}", question=f.question, answer=f.answer,
            paraphrased_answer=f.paraphrase.format(v=f.answer), paraphrased_question=f.paraphrased_question,
            perturbed_answers=tuple(wrong), meta={"attribute": f.key.rsplit("-", 1)[0], "value": f.answer},
        ))
    return out


# --------------------------------------------------------------------------- the whole world


@dataclass(frozen=True)
class World:
    profile: WorldProfile
    people: tuple[Person, ...]
    qa: dict[str, tuple[QARecord, ...]]  # person id -> that person's QA, in attribute order
    bios: dict[str, TextRecord]  # person id -> biography
    facts: tuple[QARecord, ...]

    def people_with(self, role: str) -> list[Person]:
        return [p for p in self.people if p.role == role]


_WORLDS: dict[str, World] = {}


def generate_world(profile: WorldProfile | str) -> World:
    """Generate (and memoise) a whole world. Cheap: the full profile takes a few hundred ms."""
    if isinstance(profile, str):
        profile = PROFILES[profile]
    key = repr(profile)
    if key not in _WORLDS:
        people = generate_people(profile)
        # QA perturbations and biography wordings use their own streams, so adding an attribute
        # to a profile never renames its people.
        rng = random.Random(profile.seed * 1_000_003 + 1)
        names = _Names(random.Random(profile.seed * 1_000_003 + 2))
        names.lasts = [p.last for p in people]  # wrong surnames in perturbed answers are nobody's
        qa = {p.id: tuple(person_qa(p, profile.attributes, profile.name, rng, names)) for p in people}
        bio_rng = random.Random(profile.seed * 1_000_003 + 3)
        bios = {p.id: person_bio(p, profile.attributes, profile.name, bio_rng) for p in people}
        _WORLDS[key] = World(profile, tuple(people), qa, bios, tuple(world_facts(profile)))
    return _WORLDS[key]
