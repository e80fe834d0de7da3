"""Made-up people and companies for the example company's history and traffic (deterministic)."""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Radia", "Linus",
         "Hedy", "Claude", "Katherine", "John", "Sophie", "Tim", "Anita", "Dennis", "Shafi"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Perlman",
        "Torvalds", "Lamarr", "Shannon", "Johnson", "McCarthy", "Wilson", "Berners-Lee", "Borg", "Ritchie",
        "Goldwasser"]
COMPANIES = ["Initech", "Globex", "Umbrella", "Hooli", "Vandelay", "Stark Industries", "Wayne Enterprises", "Acme",
             "Soylent", "Tyrell", "Cyberdyne", "Wonka", "Gringotts", "Aperture", "Black Mesa", "Pied Piper",
             "Massive Dynamic", "Oscorp", "Dunder Mifflin", "Prestige Worldwide"]
FREE_MAIL = ["gmail.com", "outlook.com"]


@dataclass
class Person:
    key: int
    name: str
    email: str
    company: str
    phone: str
    stripe_customer_id: str
    app_user_id: str


def make_person(rng: random.Random, key: int) -> Person:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company = rng.choice(COMPANIES)
    if rng.random() < 0.2:
        domain, company = rng.choice(FREE_MAIL), ""
    else:
        domain = company.lower().replace(" ", "") + ".example"
    email = f"{first}.{last}{key}@{domain}".lower()
    phone = f"+1 415 555 {rng.randint(1000, 9999)}"
    return Person(key, f"{first} {last}", email, company, phone, f"cus_{key:06d}", f"usr_{key:06d}")
