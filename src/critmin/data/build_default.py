"""Build the default world's data files from the shared source tables (a developer tool, not run at import).

The shipped files in ``critmin/data/worlds/default/`` are the output of this module, run once against the
source tables gathered for the project (``shared/data/sources``)::

    python -m critmin.data.build_default /path/to/shared/data/sources src/critmin/data/worlds/default

Every number it writes carries a citation id (``sources.csv``) and a basis: ``sourced`` (copied from the
source, unit-converted at most), ``derived`` (arithmetic on sourced numbers and stated factors) or
``assumption`` (a judgement, with a ``low``/``high`` range where it is a parameter). The choices are
explained in ``docs/data.md``; the constants below are the assumptions, each next to its reason.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pycountry
import yaml

BASE_YEAR = 2024
HORIZON = 2040
TRADE_YEAR = 2024

# --------------------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------------------

#: Citation id -> (full citation, basis of the citation itself, note).
CITATIONS: dict[str, tuple[str, str]] = {
    "USGS-MCS2026-DR": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2026 data release (MCS2026_Commodities_Data.csv; "
        "doi:10.5066/P1WKQ63T), 'World Mine Production and Reserves' and 'World Low-Purity Production and "
        "Production Capacity'",
        "read from a public copy of the data release (shared/data/sources/mine_production.csv)",
    ),
    "USGS-MCS2026": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2026, chapters Antimony, Graphite (natural), "
        "Nickel, Tungsten, Cobalt, Lithium (pubs.usgs.gov/periodicals/mcs2026/)",
        "tables read from a machine transcription of the chapter PDFs; rows sum to the USGS world totals",
    ),
    "WMD2026": (
        "World Mining Data 2026 (Austrian Federal Ministry of Finance), mine production by country 2018-2024",
        "shared/data/sources/wmd_production.csv; lithium as Li2O, rare earths as REO",
    ),
    "CEPII-BACI": (
        "CEPII BACI (HS92, version 202401b), Etalab Open License 2.0",
        "bilateral trade, quantity in tonnes (gross weight), value in thousand current USD",
    ),
    "IEA-GCMO2025": (
        "IEA, Global Critical Minerals Outlook 2025 (May 2025)",
        "quoted through the secondary reports named in shared/data/sources (refining_shares.csv, demand.csv)",
    ),
    "IEA-GCMO2024": (
        "IEA, Global Critical Minerals Outlook 2024 (May 2024)",
        "quoted by SEAISI (3 Jun 2024) and wayenind.com",
    ),
    "IEA-2025-10": (
        "IEA commentary 'With new export controls on critical minerals, supply concentration risks become "
        "reality' (23 Oct 2025)",
        "as reported by Rare Earth Exchanges (24 Oct 2025)",
    ),
    "IEA-EVBAT2024": (
        "IEA analysis of the 2024 EV battery market, as reported by electrive.com (3 Jun 2025)",
        "EV battery demand by market (GWh shares)",
    ),
    "INSG-2024-09": (
        "International Nickel Study Group, September 2024 forecast, published in Stainless Steel World "
        "'The world nickel market in 2024 and 2025: back-to-back surpluses' (Ferreira & Pinto)",
        "forecast values for 2024",
    ),
    "INSG-2024-04": (
        "International Nickel Study Group, April 2024 forecast, published in Stainless Steel World "
        "'The world nickel market in 2024 - slowly diminishing surplus' (Ferreira & Pinto)",
        "forecast values for 2024",
    ),
    "PROJECTBLUE-2024": (
        "Project Blue, 'How has the rise of Indonesian supply affected the cost landscape for nickel miners' "
        "(28 Aug 2024)",
        "batteries 15% of primary nickel demand (2023)",
    ),
    "CI-CMR2024": (
        "Cobalt Institute, Cobalt Market Report 2024 (May 2025, prepared by Benchmark Mineral Intelligence)",
        "as reported by Reuters/Mining Weekly via SMM news (news.metal.com)",
    ),
    "CI-CMR2023": (
        "Cobalt Institute, Cobalt Market Report 2023 (May 2024, prepared by Benchmark)",
        "as summarised by Battery Metals Africa",
    ),
    "LYNAS-FY2024": (
        "Lynas Rare Earths, FY2024 results (year to 30 Jun 2024)",
        "as reported by Metalnomist (Sep 2024); NdPr output 5,655 t, total REO 10,908 t",
    ),
    "MP-2024": (
        "MP Materials, 2024 annual results (NdPr oxide production about 1,300 t in 2024)",
        "NOT in the shared source tables: figure from the company's public reporting, not re-read here; "
        "used as an assumption and cross-checked against 'MP material fed 7-9% of China's NdPr output' "
        "(Adamas via Reuters, policies.csv)",
    ),
    "ADAMAS-2026": (
        "Adamas Intelligence via Reuters (energynews.oedigital.com, 19 Feb 2026)",
        "MP Materials concentrate had fed 7-9% of China's NdPr oxide production",
    ),
    "NEWS-2022-MAGNETS": (
        "News article 'China Dominates the Rare Earths Market. This U.S. Mine Is Trying to Change That.' "
        "(Dec 2022), republished by occasionaldigest.com and exbulletin.com",
        "secondary: China 92%, Japan 6% of metal, alloy and magnet conversion (2022)",
    ),
    "SNE-2025": (
        "SNE Research (May 2025), as reported by Chosun Biz 'Chinese firms sweep top 10 anode makers' (21 May 2025)",
        "2024 anode shipments 2.11 Mt; natural graphite 0.29 Mt (14%)",
    ),
    "USGS-MCS2025-LI": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2025, Lithium",
        "global consumption 2024 220,000 t Li; end-use shares (batteries 87%)",
    ),
    "LIBERUM-2024": (
        "Liberum (Tom Price), 'Lithium's shrinking market explained', Modern Mining (Nov 2024)",
        "EV batteries 78% of lithium demand (2024); marginal cost 15,000 USD/t LCE",
    ),
    "STATISTA-LI": (
        "Statista summary of battery-grade lithium carbonate prices (via Google Dataset Search page)",
        "secondary; 2024 annual average estimate 14,000 USD/t",
    ),
    "USGS-MCS2025-REE": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2025, Rare Earths, salient statistics "
        "(prices: Argus Media, Argus Non-Ferrous Markets)",
        "2024 annual averages (USGS estimate): Nd oxide 56, Dy oxide 260, Tb oxide 810 USD/kg",
    ),
    "FASTMARKETS-REE-2024": (
        "Fastmarkets rare earth price assessments, 18 Apr 2024 and 20 Jun 2024 (NdPr oxide FOB China "
        "53-55 and 50-52 USD/kg; Nd oxide CIF Rotterdam 53-55)",
        "point assessments",
    ),
    "LYNAS-2025-01": (
        "Lynas quarterly report as reported by australianresourcesandinvestment.com.au (17 Jan 2025)",
        "NdPr market average about 51 USD/kg in Q4 2024",
    ),
    "FASTMARKETS-CO-2024": (
        "Fastmarkets 'Cobalt metal price stable...' (5 Apr 2024)",
        "standard grade cobalt metal in-warehouse Rotterdam 12.60-14.80 USD/lb; hydroxide CIF China 7.0-7.2 "
        "USD/lb payable",
    ),
    "REUTERS-CO-2025": (
        "Reuters via Africanews (11 Mar 2025)",
        "cobalt metal about 22,000 USD/t in Feb 2025, lowest in nine years",
    ),
    "WB-NI-2024": (
        "World Bank data as reported by Katadata Databoks (Jul 2024)",
        "LME nickel monthly average Jul 2024 16,335 USD/t; World Bank Apr-2024 forecast ~17,000",
    ),
    "FASTMARKETS-GA": (
        "Fastmarkets gallium assessments (2024 preview 'A make-or-break year for non-Chinese gallium market'); "
        "China domestic prices from SMM and Fastmarkets (shared/data/episodes/gage_2023.csv)",
        "Ga 99.99% in-warehouse Rotterdam 500-600 USD/kg (Dec 2023); China 1,650-2,050 CNY/kg (2023-2025)",
    ),
    "GE-PRICES-2024": (
        "Germanium prices 2024: SMM China ingot record 13,250 CNY/kg (~1,826 USD/kg, Jun 2024, via Reuters); "
        "Argus 2,280 USD/kg (Aug 2024); Project Blue ~2,600 USD/kg China and US (Oct 2024)",
        "shared/data/episodes/gage_2023.csv",
    ),
    "REUTERS-SB-2025": (
        "Reuters, 'China's export ban to push antimony prices to new highs' (6 Jan 2025)",
        "antimony metal Rotterdam 39,500-40,000 USD/t on 31 Dec 2024, up about 250% during 2024",
    ),
    "REUTERS-W-2025": (
        "Reuters, 'China export curbs propel tungsten to highest since 2013' (15 May 2025)",
        "APT European spot 400 USD/mtu WO3 in mid-May 2025, +18% since the Feb-2025 controls",
    ),
    "METALNOMIST-W-2025": (
        "Metalnomist (Jul 2025)",
        "tungsten concentrate Rotterdam warehouse 310-320 USD/dmtu, up from 260-270 in Jan 2025",
    ),
    "GLOMBO": (
        "GLOMBO literature parameter database (Ryter et al.), github.com/johnryt/GLOMBO, table_s28 "
        "(commit d4e8070); entries compiled from Dahl's mineral elasticity database and other studies",
        "medians and inter-quartile ranges of literature elasticities (shared/data/sources/elasticities.csv)",
    ),
    "ICSG-2025": (
        "International Copper Study Group, World Copper Factbook 2025 (Oct 2025) and Statistical Yearbook "
        "2014, as summarised by ScrapMonster and Recycling International",
        "capacity utilisation: copper refineries 84.3% (2024), copper mines ~86% (2004-2013 average)",
    ),
    "IEA-STEPS-DEMAND": (
        "IEA Global Critical Minerals Outlook 2025 (STEPS), via HotCopper/Down To Earth summaries; IEA "
        "baseline 2024-2030 growth via Statista chart 35397",
        "demand anchors: lithium x5 by 2040 (+146% by 2030); graphite and nickel x2 by 2040 (graphite +50-75% "
        "by 2030); cobalt and rare earths +50-60% by 2040 (cobalt +50-75%, rare earths +45% by 2030)",
    ),
    "IEA-MAGNET-2024": (
        "IEA Global Critical Minerals Outlook 2024 via SEAISI / wayenind.com",
        "magnet rare earth demand 93,000 t (2023); EV share of magnet REE demand 7% (2023)",
    ),
    "GVR-2024": (
        "Grand View Research (Feb 2024), as quoted in an UNSPSC category market report",
        "sintered NdFeB market by value 2024: Asia-Pacific 85%, Europe 8%, North America 5%; low confidence",
    ),
    "AMECO-2019": (
        "Ameco Research press release 'Global consumption of germanium is expected to reach 168.6 tons in "
        "2024' (20 Apr 2019)",
        "end uses 2017: fibre optics 33.4%, infrared optics 26.2%; secondary",
    ),
    "USGS-MCS2025-GE": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2025, Germanium",
        "China Ge metal exports Jan-Aug 2024 16,700 kg (Belgium 33%, Germany 32%, Russia 25%, Japan 6%); US "
        "imports 33,000 kg Ge content",
    ),
    "USGS-MCS2025-SB": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2025, Antimony",
        "US apparent consumption 24,000 t Sb (2024); US uses: metal products 40%, flame retardants 39%",
    ),
    "SB-CHINA-SPLIT": (
        "Chinese industry article (ysy2020.cn news 261703), undated",
        "China antimony use: flame retardants 50%, battery alloys 17%, plastic stabilisers 15%, catalysts 10%, "
        "other 8%; US, Japan, Korea and Western Europe >50% of world consumption; low confidence",
    ),
    "ROSKILL-W-2017": (
        "Roskill, 'Tungsten market looks to rebalance in 2017' (2017)",
        "China 'nearly 60%' of world tungsten consumption (2016); cemented carbides >50%",
    ),
    "USGS-MCS2025-GA": (
        "U.S. Geological Survey, Mineral Commodity Summaries 2025, Gallium",
        "world high-purity refined gallium production 2024 about 320,000 kg; capacity 340,000 kg/yr (plus "
        "~280,000 kg/yr secondary); US uses: integrated circuits 79%, optoelectronics 20%",
    ),
    "ARGUS-FREIGHT-2021": (
        "Argus Media, 'Higher shipping rates hit Australian resource firms' (9 Sep 2021), quoting Base Resources",
        "bulk freight Kenya-China (55 kt vessel): 28 USD/t (c. Sep 2020), 90 USD/t (Sep 2021 spike)",
    ),
    "FASTMARKETS-FREIGHT-2020": (
        "Fastmarkets, 'Soaring freight costs disrupting metals, minerals trade' (12 Nov 2020)",
        "20-ft container China-India 2,000 USD, China-US 4,000-5,000 USD (spike: 'more than double')",
    ),
    "ROSKILL-LI-FREIGHT": (
        "Roskill, 'Lithium: assessing the impact of higher freight rates on future lithium production costs' (c. 2019)",
        "implies ocean freight of roughly 200 USD/t LCE for spodumene concentrate WA-China",
    ),
    "STOICH": (
        "Standard atomic weights (IUPAC): Li 6.94, C 12.011, O 15.999, Pr 140.908, Nd 144.242, Tb 158.925, "
        "Dy 162.500, W 183.84",
        "oxide-to-element and compound-to-element factors",
    ),
    "EU-MEMBERS": (
        "European Union, member countries (european-union.europa.eu), EU-27 since 1 Feb 2020",
        "membership list; codes validated with pycountry",
    ),
    "POLICIES": (
        "critmin shared policy table (shared/data/sources/policies.csv): White House S232 fact sheet "
        "(14 Jan 2026); US Interior (Burgum) statements (3 Feb 2026); State Dept ministerial readout "
        "(4 Feb 2026)",
        "named club members and allies",
    ),
    "MIIT-2024": (
        "China MIIT 2024 rare earth mining quota 270,000 t REO (Mining.com via Mexico Business News, 2025)",
        "shared/data/sources/policies.csv",
    ),
    "CRITMIN": (
        "critmin default-world build (src/critmin/data/build_default.py; choices in docs/data.md)",
        "derivations and labelled assumptions made for this dataset",
    ),
}

# --------------------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------------------

EU27 = (
    "AUT BEL BGR HRV CYP CZE DNK EST FIN FRA DEU GRC HUN IRL ITA LVA LTU LUX MLT NLD POL PRT ROU SVK SVN ESP SWE"
).split()

#: Club members and allies named in policies.csv (not a formal membership list; see docs/data.md).
CLUB_NAMED = {
    "USA": "club organiser (United States)",
    "AUS": "named as joined the club (Burgum, 3 Feb 2026) and S232 prior agreement",
    "JPN": "named as joined the club (Burgum, 3 Feb 2026) and S232 prior agreement",
    "KOR": "named as joined the club (Burgum, 3 Feb 2026)",
    "SAU": "S232 fact sheet prior agreement (14 Jan 2026)",
    "MYS": "S232 fact sheet prior agreement (14 Jan 2026)",
    "THA": "S232 fact sheet prior agreement (14 Jan 2026)",
}

#: Representative location of each region (for transport distance): the main port or hub through which
#: the region's mineral trade passes, or the capital / mining centre where the region is landlocked.
LOCATIONS: dict[str, tuple[str, float, float]] = {
    "ARG": ("Buenos Aires (port)", -34.60, -58.37),
    "AUS": ("Fremantle, Western Australia (lithium, nickel, rare earth exports)", -32.06, 115.74),
    "CHL": ("Antofagasta (lithium and copper port)", -23.65, -70.40),
    "CHN": ("Shanghai (port)", 31.23, 121.47),
    "COD": ("Lubumbashi (Copperbelt; landlocked, exports via Durban/Dar es Salaam)", -11.66, 27.48),
    "IDN": ("Morowali industrial park, Sulawesi (nickel and cobalt hub)", -2.83, 122.16),
    "JPN": ("Yokohama (port)", 35.44, 139.64),
    "KOR": ("Busan (port)", 35.10, 129.04),
    "MDG": ("Toamasina (port)", -18.15, 49.40),
    "MMR": ("Yangon (port; much rare earth trade crosses overland to Yunnan)", 16.87, 96.20),
    "MYS": ("Kuantan (Lynas Gebeng plant)", 3.97, 103.43),
    "PHL": ("Manila (port)", 14.59, 120.97),
    "RUS": ("Saint Petersburg (port)", 59.93, 30.31),
    "SAU": ("Dammam / Ras Al-Khair (port and Ma'aden hub)", 26.43, 50.10),
    "THA": ("Laem Chabang (port)", 13.08, 100.88),
    "TJK": ("Dushanbe (landlocked)", 38.56, 68.79),
    "USA": ("Los Angeles / Long Beach (trans-Pacific port)", 33.74, -118.27),
    "ZWE": ("Harare (landlocked, exports via Beira)", -17.83, 31.05),
    "EU": ("Rotterdam (EU's main port; CIF Rotterdam price basis)", 51.95, 4.14),
    "ROW": ("Mumbai (notional point for the rest of the world)", 18.95, 72.83),
}

COUNTRY_REGIONS = tuple(sorted(c for c in LOCATIONS if c not in ("EU", "ROW")))
REGIONS = (*COUNTRY_REGIONS, "EU", "ROW")
SECTORS = ("defense", "ev", "wind", "electronics", "other")

SECTOR_INFO = {
    "defense": "Defence equipment and munitions (the defence share of each end use)",
    "ev": "Electric vehicles and batteries (EV and stationary-storage batteries, EV traction motors)",
    "wind": "Wind turbines (permanent-magnet generators)",
    "electronics": "Electronics, semiconductors and electrical equipment (incl. appliances and industrial "
    "motors for rare-earth magnets, portable batteries)",
    "other": "All other uses (alloys, steel, chemicals, glass and ceramics, catalysts, refractories; base-year "
    "stock changes where stated)",
}


def region_of(iso3: str) -> str:
    """Model region of an ISO 3166 alpha-3 code (EU members -> EU, other non-model codes -> ROW)."""
    if iso3 in EU27:
        return "EU"
    if iso3 in COUNTRY_REGIONS:
        return iso3
    return "ROW"


# --------------------------------------------------------------------------------------------------------
# Stoichiometry (STOICH)
# --------------------------------------------------------------------------------------------------------

_O = 15.999
ND, PR, DY, TB, LI, W = 144.242, 140.908, 162.500, 158.925, 6.94, 183.84
ND2O3 = 2 * ND / (2 * ND + 3 * _O)
PR6O11 = 6 * PR / (6 * PR + 11 * _O)
#: element content of NdPr oxide (75:25 Nd2O3:Pr6O11 by mass)
NDPR_OXIDE = 0.75 * ND2O3 + 0.25 * PR6O11
DY2O3 = 2 * DY / (2 * DY + 3 * _O)
TB4O7 = 4 * TB / (4 * TB + 7 * _O)
LI2CO3 = 2 * LI / (2 * LI + 12.011 + 3 * _O)
LIOH_H2O = LI / (LI + _O + 1.008 + 2 * 1.008 + _O)
LI2O = 2 * LI / (2 * LI + _O)
WO3 = W / (W + 3 * _O)

# --------------------------------------------------------------------------------------------------------
# Minerals and stages
# --------------------------------------------------------------------------------------------------------

MINERALS: dict[str, dict[str, Any]] = {
    "ndpr": {
        "name": "Neodymium-praseodymium (NdPr)",
        "unit": f"t Nd+Pr contained (element); 1 t NdPr oxide (75:25) = {NDPR_OXIDE:.4f} t",
        "stages": ("mine", "refine", "magnet"),
        "products": ("rare-earth concentrate (NdPr content)", "separated NdPr oxide", "NdFeB magnets"),
    },
    "dy": {
        "name": "Dysprosium",
        "unit": f"t Dy contained; 1 t Dy2O3 = {DY2O3:.4f} t Dy",
        "stages": ("mine", "refine", "magnet"),
        "products": ("rare-earth concentrate (Dy content)", "separated Dy oxide", "NdFeB magnets (Dy content)"),
    },
    "tb": {
        "name": "Terbium",
        "unit": f"t Tb contained; 1 t Tb4O7 = {TB4O7:.4f} t Tb",
        "stages": ("mine", "refine", "magnet"),
        "products": ("rare-earth concentrate (Tb content)", "separated Tb oxide", "NdFeB magnets (Tb content)"),
    },
    "lithium": {
        "name": "Lithium",
        "unit": f"t Li contained; 1 t Li2CO3 = {LI2CO3:.4f} t Li; 1 t LiOH.H2O = {LIOH_H2O:.4f} t Li",
        "stages": ("mine", "refine"),
        "products": ("spodumene concentrate and brine (Li content)", "lithium carbonate and hydroxide"),
    },
    "graphite": {
        "name": "Graphite (natural)",
        "unit": "t natural graphite (gross weight as USGS reports it; concentrate about 90-97% C)",
        "stages": ("mine", "refine"),
        "products": ("natural graphite concentrate (flake, amorphous)", "battery-grade spherical graphite"),
    },
    "cobalt": {
        "name": "Cobalt",
        "unit": "t Co contained",
        "stages": ("mine", "refine"),
        "products": ("mine output in intermediates (hydroxide, concentrate, MHP)", "refined metal and chemicals"),
    },
    "nickel": {
        "name": "Nickel",
        "unit": "t Ni contained",
        "stages": ("mine", "refine"),
        "products": (
            "ore, concentrate and mine-site intermediates",
            "primary nickel (class 1, NPI/FeNi, chemicals) as INSG counts it",
        ),
    },
    "gallium": {
        "name": "Gallium",
        "unit": "t Ga contained (USGS reports kg)",
        "stages": ("mine", "refine"),
        "products": (
            "primary low-purity gallium (99.9-99.99%, by-product of alumina)",
            "high-purity refined gallium (6N+)",
        ),
    },
    "germanium": {
        "name": "Germanium",
        "unit": "t Ge contained",
        "stages": ("mine", "refine"),
        "products": ("germanium in concentrates and zinc/coal residues", "refined germanium (metal, GeO2)"),
    },
    "antimony": {
        "name": "Antimony",
        "unit": "t Sb contained",
        "stages": ("mine", "refine"),
        "products": ("antimony ores and concentrates", "antimony metal and trioxide"),
    },
    "tungsten": {
        "name": "Tungsten",
        "unit": f"t W contained; 1 t WO3 = {WO3:.4f} t W",
        "stages": ("mine", "refine"),
        "products": ("tungsten concentrates", "APT, oxides and primary tungsten products"),
    },
}
REE = ("ndpr", "dy", "tb")


@dataclass(frozen=True)
class Param:
    """A number with its provenance and (for assumptions) its range."""

    value: float
    basis: str
    source: str
    note: str = ""
    low: float | None = None
    high: float | None = None

    def row(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "source": self.source,
            "basis": self.basis,
            "note": self.note,
        }


#: Yields of stages after the first (output per unit input, contained terms).
YIELDS: dict[tuple[str, str], Param] = {
    **{
        (m, "refine"): Param(
            1.0, "assumption", "CRITMIN", "separation recovery not sourced; default 1 in contained terms", 0.85, 1.0
        )
        for m in REE
    },
    **{
        (m, "magnet"): Param(
            1.0, "assumption", "CRITMIN", "in-process swarf is recycled; default 1 in contained terms", 0.75, 1.0
        )
        for m in REE
    },
    ("lithium", "refine"): Param(
        1.0,
        "assumption",
        "CRITMIN;USGS-MCS2025-LI",
        "default 1; consistent with USGS 2024 consumption 220,000 t vs mine output 222,000 t (1% gap)",
        0.9,
        1.0,
    ),
    ("graphite", "refine"): Param(
        0.5,
        "assumption",
        "CRITMIN",
        "spheronisation and purification yield of flake concentrate into battery-grade spherical graphite",
        0.3,
        0.7,
    ),
    ("gallium", "refine"): Param(1.0, "assumption", "CRITMIN", "default 1 in contained terms", 0.9, 1.0),
    ("germanium", "refine"): Param(
        1.0,
        "assumption",
        "CRITMIN",
        "default 1; mine stage set equal to refinery output by country (no mine-stage data)",
        0.9,
        1.0,
    ),
    ("antimony", "refine"): Param(1.0, "assumption", "CRITMIN", "default 1 in contained terms", 0.85, 1.0),
    ("tungsten", "refine"): Param(1.0, "assumption", "CRITMIN", "default 1 in contained terms", 0.9, 1.0),
}

# --------------------------------------------------------------------------------------------------------
# Rare earths: REO -> element distribution (oxide mass fraction of total REO), by deposit type
# --------------------------------------------------------------------------------------------------------

_REO_NOTE = (
    "oxide mass fraction of TREO, typical of the deposit type as published in the literature (e.g. Castor & "
    "Hedrick 2006; Long et al. 2010, USGS SIR 2010-5220); figures not re-read from those sources in this build"
)
#: deposit type -> (NdPr oxide, Dy2O3, Tb4O7) fractions of REO
REO_TYPES: dict[str, tuple[float, float, float, str]] = {
    "china_blend": (
        0.22,
        0.0037,
        0.0014,
        "China 2024 quota blend: ~70% Bayan Obo bastnaesite-monazite "
        "(NdPr ~0.24, Dy/Tb ~0.001), ~23% Sichuan bastnaesite (NdPr ~0.16), ~7% ionic clays",
    ),
    "mountain_pass": (0.163, 0.0003, 0.0002, "Mountain Pass bastnaesite (Nd 12.0%, Pr 4.3%)"),
    "mount_weld": (0.238, 0.0012, 0.0007, "Mount Weld (Nd 18.5%, Pr 5.3%)"),
    "ionic_clay": (0.25, 0.04, 0.007, "South-east Asian ionic clays (medium-heavy type)"),
    "monazite_other": (0.22, 0.005, 0.001, "monazite placers and other deposits"),
}
REO_COUNTRY_TYPE = {
    "CHN": "china_blend",
    "USA": "mountain_pass",
    "AUS": "mount_weld",
    "MMR": "ionic_clay",
    "MDG": "ionic_clay",
    "THA": "ionic_clay",
    "MYS": "ionic_clay",
    "VNM": "ionic_clay",
    "LAO": "ionic_clay",
}
REO_RANGES = {"ndpr": (0.75, 1.25), "dy": (0.5, 1.5), "tb": (0.5, 1.5)}  # relative range of the fractions
REO_ELEMENT = {"ndpr": NDPR_OXIDE, "dy": DY2O3, "tb": TB4O7}


def reo_factor(iso3: str, mineral: str) -> float:
    """Element tonnes of ``mineral`` per tonne REO mined in ``iso3`` (oxide fraction x element content)."""
    kind = REO_COUNTRY_TYPE.get(iso3, "monazite_other")
    idx = {"ndpr": 0, "dy": 1, "tb": 2}[mineral]
    return float(REO_TYPES[kind][idx]) * REO_ELEMENT[mineral]


# --------------------------------------------------------------------------------------------------------
# Source readers
# --------------------------------------------------------------------------------------------------------


@dataclass
class Sources:
    """The shared source tables."""

    mine: pd.DataFrame
    wmd: pd.DataFrame
    baci: pd.DataFrame

    @classmethod
    def read(cls, folder: Path) -> Sources:
        return cls(
            mine=pd.read_csv(folder / "mine_production.csv"),
            wmd=pd.read_csv(folder / "wmd_production.csv"),
            baci=pd.read_csv(folder / "baci_trade.csv"),
        )


@dataclass
class CountryValue:
    """A country-level number with its provenance."""

    iso3: str
    value: float
    source: str
    basis: str
    note: str


def usgs_mine(src: Sources, mineral: str) -> tuple[list[CountryValue], float, str]:
    """USGS 2024 mine output by country (plus the 'Other countries' row as ``OTHER``) and the world total.

    Returns the country rows, the world total used and a note on the total. Where the USGS world total is
    rounded below the sum of its listed rows, the sum is used.
    """
    d = src.mine[(src.mine.year == BASE_YEAR)]
    usgs = d.source.str.startswith("USGS Mineral Commodity Summaries 2026")
    if mineral == "rare_earths":
        rows = d[(d.mineral == "rare_earths") & usgs & (d.unit == "t REO")]
    elif mineral == "gallium":
        rows = d[(d.mineral == "gallium") & usgs & (d.unit == "kg Ga (primary low-purity)")]
    elif mineral == "graphite":
        rows = d[(d.mineral == "graphite") & (usgs | (d.country_iso3 == "MOZ"))]
    else:
        rows = d[(d.mineral == mineral) & usgs]
    scale = 1e-3 if mineral == "gallium" else 1.0
    out: list[CountryValue] = []
    world = math.nan
    for rec in rows.to_dict("records"):
        code = str(rec["country_iso3"])
        raw = rec["production"]
        val = float(raw) * scale if pd.notna(raw) else math.nan
        cite = "USGS-MCS2026-DR" if "data release" in str(rec["source"]) else "USGS-MCS2026"
        if code == "MOZ" and mineral == "graphite":
            cite = "USGS-MCS2026"
        note = str(rec["note"]) if pd.notna(rec["note"]) else ""
        if code == "WLD":
            world = val
            continue
        if code == "ROW":
            code = "OTHER"
        if math.isnan(val):
            continue
        out.append(CountryValue(code, val, cite, "sourced", note))
    listed = sum(c.value for c in out)
    if math.isnan(world) or listed > world:
        note = f"USGS world total ({world:g}) is rounded below the sum of listed rows; the sum {listed:g} is used"
        world = listed
    else:
        note = f"USGS world total {world:g}"
    return out, world, note


# --------------------------------------------------------------------------------------------------------
# Output tables
# --------------------------------------------------------------------------------------------------------


class Tables:
    """Rows of every output file, collected as lists of dicts."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def add(self, file: str, **row: Any) -> None:
        self.rows.setdefault(file, []).append(row)

    def frame(self, file: str, columns: list[str]) -> pd.DataFrame:
        df = pd.DataFrame(self.rows.get(file, []))
        for c in columns:
            if c not in df:
                df[c] = None
        return df[columns]


# production[(mineral, stage)] = {region: quantity}
Quant = dict[tuple[str, str], dict[str, float]]


def _agg(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {r: 0.0 for r in REGIONS}
    for region, v in values:
        out[region] += v
    return out


def _cite(*ids: str) -> str:
    for i in ids:
        if i not in CITATIONS:
            raise KeyError(i)
    return ";".join(dict.fromkeys(ids))


# --------------------------------------------------------------------------------------------------------
# Mine output
# --------------------------------------------------------------------------------------------------------


def wmd_fill(src: Sources, key: str, rows: list[CountryValue], world: float) -> list[CountryValue]:
    """Countries of model regions that USGS does not list (they sit in its 'Other countries').

    Their World Mining Data 2024 output, in USGS units, is taken out of the unlisted remainder (USGS world
    total less every listed country), scaled down if it would exceed it.
    """
    listed = {c.iso3 for c in rows}
    room = world - sum(c.value for c in rows if c.iso3 != "OTHER")
    w = src.wmd[(src.wmd.mineral == key) & (src.wmd.year == BASE_YEAR)]
    unit = {"lithium": LI2O, "gallium": 1000.0}.get(key, 1.0)  # WMD Li2O -> t Li; WMD t Ga -> kg
    cands = [
        (str(c), float(v) * unit)
        for c, v in zip(w["country_iso3"].tolist(), w["production"].tolist(), strict=True)
        if str(c) not in listed
        and pd.notna(v)
        and float(v) > 0
        and region_of(str(c)) != "ROW"
        and str(c) not in ("DELETE", "R20")
    ]
    total = sum(v for _c, v in cands)
    if total <= 0 or room <= 0:
        return []
    scale = min(1.0, room / total)
    return [
        CountryValue(
            c,
            v * scale,
            "WMD2026",
            "derived",
            f"not listed separately by USGS (inside its 'Other countries'): World Mining Data 2024 {v:g}"
            + (f" x {scale:.3f} to fit the USGS remainder" if scale < 1 else ""),
        )
        for c, v in cands
    ]


def mine_output(src: Sources, t: Tables) -> tuple[Quant, dict[str, dict[str, float]]]:
    """Mine output by region for every mineral; returns quantities and country-level detail for checks."""
    prod: Quant = {}
    country_detail: dict[str, dict[str, float]] = {}

    def write(mineral: str, by_region: dict[str, float], notes: dict[str, tuple[str, str, str]]) -> None:
        prod[(mineral, "mine")] = by_region
        for region in REGIONS:
            q = by_region[region]
            if q <= 0:
                continue
            source, basis, note = notes[region]
            t.add(
                "production",
                mineral=mineral,
                stage="mine",
                region=region,
                quantity_t=q,
                source=source,
                basis=basis,
                note=note,
            )

    def from_usgs(
        key: str,
        mineral: str,
        factor: dict[str, float] | None = None,
        extra: list[CountryValue] | None = None,
        factor_note: str = "",
    ) -> None:
        rows, world, wnote = usgs_mine(src, key)
        rows = rows + (extra or [])
        rows = rows + wmd_fill(src, key, rows, world)
        fac = factor or {}
        by_region: dict[str, float] = {r: 0.0 for r in REGIONS}
        members: dict[str, list[str]] = {r: [] for r in REGIONS}
        named_sum = 0.0
        detail: dict[str, float] = {}
        for c in rows:
            if c.iso3 == "OTHER":
                continue
            f = fac.get(c.iso3, fac.get("*", 1.0))
            region = region_of(c.iso3)
            detail[c.iso3] = c.value * f
            if region == "ROW":
                continue
            by_region[region] += c.value * f
            named_sum += c.value
            members[region].append(f"{c.iso3} {c.value:g}")
        # ROW is the remainder to the world total (in source units), converted with the ROW countries' mix
        row_countries = [c for c in rows if region_of(c.iso3) == "ROW" and c.iso3 != "OTHER"]
        row_remainder = world - named_sum
        listed_row = sum(c.value for c in row_countries)
        if row_remainder < -1e-6:
            raise ValueError(f"{mineral}: ROW remainder negative ({row_remainder})")
        if fac:
            # convert each ROW country with its own factor; the unlisted rest with the default factor
            conv = sum(c.value * fac.get(c.iso3, fac.get("*", 1.0)) for c in row_countries)
            conv += max(row_remainder - listed_row, 0.0) * fac.get("*", 1.0)
        else:
            conv = row_remainder
        by_region["ROW"] = conv
        detail["OTHER"] = max(row_remainder - listed_row, 0.0) * fac.get("*", 1.0)
        country_detail[mineral] = detail
        unit_note = f" {factor_note}" if factor_note else ""
        notes: dict[str, tuple[str, str, str]] = {}
        for region in REGIONS:
            if region == "ROW":
                listed = ", ".join(f"{c.iso3} {c.value:g}" for c in row_countries if c.value > 0)
                notes[region] = (
                    _cite(
                        "USGS-MCS2026-DR" if key in ("rare_earths", "lithium", "cobalt", "gallium") else "USGS-MCS2026",
                        "CRITMIN",
                    ),
                    "derived",
                    f"remainder to the world total: {wnote} minus the model regions' countries = "
                    f"{row_remainder:g} (source units; listed: {listed or 'none'}; the rest is USGS 'Other "
                    f"countries' and rounding).{unit_note}",
                )
            elif region == "EU":
                eu_srcs = sorted({c.source for c in rows if region_of(c.iso3) == "EU"}) or ["USGS-MCS2026"]
                notes[region] = (
                    _cite(*eu_srcs, "EU-MEMBERS"),
                    "derived",
                    "sum of EU members: "
                    + ", ".join(members[region])
                    + "."
                    + "".join(
                        f" {c.iso3}: {c.note}." for c in rows if region_of(c.iso3) == "EU" and c.source == "WMD2026"
                    )
                    + unit_note,
                )
            else:
                srcs = {c.source for c in rows if c.iso3 == region}
                basis = "derived" if fac or any(c.basis == "derived" for c in rows if c.iso3 == region) else "sourced"
                notes[region] = (
                    _cite(*(sorted(srcs) or ["USGS-MCS2026"]), *(["CRITMIN", "STOICH"] if fac else [])),
                    basis,
                    "; ".join(c.note for c in rows if c.iso3 == region and c.note) + unit_note,
                )
        write(mineral, by_region, notes)

    # Rare earths: REO by country -> NdPr / Dy / Tb element content
    for m in REE:
        fac = {iso: reo_factor(iso, m) for iso in set(REO_COUNTRY_TYPE) | {"IND", "BRA", "NGA", "RUS"}}
        fac["*"] = reo_factor("ROW", m)
        from_usgs(
            "rare_earths",
            m,
            fac,
            factor_note=f"Converted from t REO with the deposit-type distribution factors in "
            f"content_factors.csv (oxide fraction x {REO_ELEMENT[m]:.4f} element/oxide).",
        )
    # Lithium: USGS excludes US output (withheld, 'W'); use World Mining Data's Li2O figure converted to Li
    us_li2o = float(
        src.wmd[
            (src.wmd.mineral == "lithium") & (src.wmd.country_iso3 == "USA") & (src.wmd.year == BASE_YEAR)
        ].production.iloc[0]
    )
    from_usgs("lithium", "lithium")
    us_li = us_li2o * LI2O
    prod[("lithium", "mine")]["USA"] = us_li
    t.add(
        "production",
        mineral="lithium",
        stage="mine",
        region="USA",
        quantity_t=us_li,
        source=_cite("WMD2026", "STOICH"),
        basis="derived",
        note=f"USGS withholds US output (W, excluded from its world total); World Mining Data 2024 "
        f"{us_li2o:g} t Li2O x {LI2O:.4f} t Li/t Li2O",
    )
    country_detail["lithium"]["USA"] = us_li
    from_usgs("graphite", "graphite")
    from_usgs("cobalt", "cobalt")
    from_usgs("nickel", "nickel")
    from_usgs("antimony", "antimony")
    from_usgs("tungsten", "tungsten")
    from_usgs("gallium", "gallium", factor_note="USGS reports kg; converted to t.")
    # Germanium: USGS publishes no country table; World Mining Data 'Germanium' (refinery-level output)
    ge = src.wmd[(src.wmd.mineral == "germanium") & (src.wmd.year == BASE_YEAR)]
    by: dict[str, float] = {r: 0.0 for r in REGIONS}
    det: dict[str, float] = {}
    for code_raw, value in zip(ge["country_iso3"].tolist(), ge["production"].tolist(), strict=True):
        code = str(code_raw)
        if code == "DELETE" or pd.isna(value):
            continue
        by[region_of(code)] += float(value)
        det[code] = float(value)
    country_detail["germanium"] = det
    notes_ge = {
        reg: (
            _cite("WMD2026"),
            "sourced" if reg not in ("ROW", "EU") else "derived",
            "World Mining Data 2024 'Germanium' (refinery-level output; USGS publishes no country table). "
            "The mine stage is set equal to it by country (germanium is recovered from zinc residues and "
            "coal ash where it is refined)."
            + (" ROW = sum of other countries listed (COD 1 t)." if reg == "ROW" else ""),
        )
        for reg in REGIONS
    }
    write("germanium", by, notes_ge)
    return prod, country_detail


# --------------------------------------------------------------------------------------------------------
# Trade (CEPII BACI)
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeMap:
    """How HS codes map onto one stage of one mineral."""

    mineral: str
    stage: str
    hs6: tuple[int, ...]
    factor: Param  # t contained per t gross
    uv_min: float | None = None  # USD per t gross: flows below are excluded
    uv_max: float | None = None
    classes: tuple[tuple[float, float, Param], ...] = ()  # (uv_lo, uv_hi, factor) overrides per unit value
    product: str = ""
    note: str = ""


TRADE_MAPS: tuple[TradeMap, ...] = (
    TradeMap(
        "graphite",
        "mine",
        (250410, 250490),
        Param(
            1.0,
            "assumption",
            "CRITMIN",
            "natural graphite concentrate counted at gross weight, as USGS counts mine output",
            1.0,
            1.0,
        ),
        uv_max=1500.0,
        product="natural graphite, powder/flakes and other forms",
        note="flows above 1,500 USD/t are treated as processed (purified/spherical) graphite, a refine-stage "
        "product, and left out; spherical graphite also trades under other codes, so the refine stage has "
        "no observed trade",
    ),
    TradeMap(
        "nickel",
        "mine",
        (260400,),
        Param(
            0.12,
            "assumption",
            "CRITMIN",
            "sulphide concentrate about 12% Ni (unit value >= 300 USD/t); "
            "checked against unit values of RUS->CHN and CAN->FIN flows (~8-13% Ni at 2024 prices)",
            0.08,
            0.18,
        ),
        classes=(
            (
                0.0,
                300.0,
                Param(
                    0.007,
                    "assumption",
                    "CRITMIN",
                    "lateritic direct-shipping ore about 0.7% "
                    "Ni on a wet basis (unit value < 300 USD/t); with it the Philippines' "
                    "exports come to ~90% of its mine output",
                    0.006,
                    0.012,
                ),
            ),
        ),
        product="nickel ores and concentrates",
        note="mine-site intermediates (MHP, matte) trade under other HS codes and are not observed",
    ),
    TradeMap(
        "cobalt",
        "mine",
        (810510, 282200),
        Param(
            0.30,
            "assumption",
            "CRITMIN",
            "cobalt hydroxide about 30% Co (wet); cross-check: the DRC->China "
            "value at the Apr-2024 hydroxide payable (7.1 USD/lb) implies ~31%",
            0.2,
            0.4,
        ),
        uv_max=12000.0,
        product="cobalt intermediates (hydroxide, mattes) and cobalt oxides/hydroxides",
        note="flows above 12,000 USD/t (refined metal, oxides, powders) are refine-stage products and left "
        "out; refined cobalt chemicals (sulphate) trade under other codes, so the refine stage has no "
        "observed trade",
    ),
    TradeMap(
        "tungsten",
        "mine",
        (261100,),
        Param(
            0.65 * WO3,
            "assumption",
            "CRITMIN;STOICH",
            f"concentrate about 65% WO3 x {WO3:.4f} t W/t WO3",
            0.30 * WO3,
            0.75 * WO3,
        ),
        uv_min=5000.0,
        product="tungsten ores and concentrates",
        note="flows below 5,000 USD/t (under ~20% WO3 at 2024 prices) are taken as low-grade material or "
        "misdeclared and left out",
    ),
    TradeMap(
        "lithium",
        "refine",
        (283691, 282520),
        Param(LI2CO3, "derived", "STOICH", f"lithium carbonate {LI2CO3:.4f} t Li/t", LI2CO3, LI2CO3),
        uv_min=3000.0,
        classes=(),
        product="lithium carbonate (283691) and lithium oxide/hydroxide (282520)",
        note="flows below 3,000 USD/t cannot be lithium chemicals at 2024 prices (misdeclared ore) and are left out",
    ),
)
#: HS 282520 is traded as the monohydrate
LIOH_FACTOR = Param(
    LIOH_H2O,
    "assumption",
    "STOICH",
    f"lithium hydroxide traded as LiOH.H2O, {LIOH_H2O:.4f} t Li/t (anhydrous would be 0.2898)",
    LIOH_H2O,
    0.2898,
)

UNMAPPED_STAGES = {
    ("ndpr", "mine"): "rare-earth concentrates trade under HS 2530.90/2612 (not in the extract)",
    ("ndpr", "refine"): "HS 2846.90 mixes all rare-earth compounds (mixed carbonate, separated oxides of every "
    "element); no credible NdPr content",
    ("ndpr", "magnet"): "NdFeB magnets trade under HS 8505.11 (not in the extract)",
    ("lithium", "mine"): "spodumene concentrate trades under HS 2530.90 (not in the extract)",
    ("graphite", "refine"): "spherical graphite is split between HS 2504.10 and 3801 without a content split",
    ("cobalt", "refine"): "refined cobalt chemicals (sulphate, HS 2833.29) are not in the extract",
    ("nickel", "refine"): "refined nickel (HS 7502, NPI 7202.60) is not in the extract",
    ("antimony", "mine"): "HS 2617.10 concentrates range 5-60% Sb, some gold-bearing, with transit trade through "
    "Thailand; no credible content factor",
    ("antimony", "refine"): "antimony metal and trioxide are not in the extract",
    ("tungsten", "refine"): "HS 8101.10 powders cover a small part of the stage (APT, oxides, carbide absent)",
    ("gallium", "mine"): "gallium trades under HS 8112.92 (not in the extract)",
    ("germanium", "refine"): "HS 8112.30 has no 2024 rows in the extract",
}


def baci_flows(src: Sources) -> dict[tuple[str, str], pd.DataFrame]:
    """Observed 2024 flows per mapped stage, converted to contained tonnes and aggregated to model regions."""
    b = src.baci[(src.baci.year == TRADE_YEAR)].copy()
    b = b[b.quantity_t.notna() & (b.quantity_t > 0)]
    b["uv"] = b.value_kusd * 1000.0 / b.quantity_t
    b["exporter"] = b.exporter_iso3.map(region_of)
    b["importer"] = b.importer_iso3.map(region_of)
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for tm in TRADE_MAPS:
        x = b[b.hs6.isin(tm.hs6)].copy()
        if tm.uv_min is not None:
            x = x[x.uv >= tm.uv_min]
        if tm.uv_max is not None:
            x = x[x.uv < tm.uv_max]
        factor = np.full(len(x), tm.factor.value)
        for lo, hi, p in tm.classes:
            factor = np.where((x.uv >= lo) & (x.uv < hi), p.value, factor)
        if tm.mineral == "lithium":
            factor = np.where(x.hs6 == 282520, LIOH_FACTOR.value, factor)
        x["contained"] = x.quantity_t * factor
        x = x[x.exporter != x.importer]
        g = (
            x.groupby(["exporter", "importer"])
            .agg(
                quantity_t=("contained", "sum"),
                gross_t=("quantity_t", "sum"),
                value_kusd=("value_kusd", "sum"),
                hs6=("hs6", lambda s: ";".join(str(v) for v in sorted(set(s)))),
                n=("contained", "size"),
            )
            .reset_index()
        )
        out[(tm.mineral, tm.stage)] = g
    return out


#: Apparent consumption below this share of the world total is statistical noise (small or misdeclared
#: flows in BACI); it is folded into ROW, which also keeps the calibrated curves well conditioned.
SMALL_CONSUMER_SHARE = 0.001


def fold_small(values: dict[str, float], share: float = SMALL_CONSUMER_SHARE) -> dict[str, float]:
    """Move regional amounts below ``share`` of the total into ROW (totals are unchanged)."""
    total = sum(values.values())
    out = dict(values)
    moved = 0.0
    for r, v in values.items():
        if r != "ROW" and 0 < v < share * total:
            out[r] = 0.0
            moved += v
    out["ROW"] = out.get("ROW", 0.0) + moved
    return out


def reconcile_trade(
    flows: pd.DataFrame, production: Mapping[str, float], use: Mapping[str, float], max_iter: int = 50
) -> pd.DataFrame:
    """Scale observed flows so that no region exports more than it produces or imports more than it uses.

    A region with no output at the stage is a transit or re-export hub: its exports are dropped (origin
    unknown). Scaling only shrinks flows, so the loop converges.
    """
    f = flows.copy()
    if "raw_quantity_t" not in f:
        f["raw_quantity_t"] = f.quantity_t
    for _ in range(max_iter):
        changed = False
        exp = f.groupby("exporter").quantity_t.sum()
        for region, x in exp.items():
            cap = production.get(str(region), 0.0)
            if x > cap * (1 + 1e-9) and x > 0:
                f.loc[f.exporter == region, "quantity_t"] *= cap / x
                changed = True
        imp = f.groupby("importer").quantity_t.sum()
        for region, m in imp.items():
            cap = use.get(str(region), 0.0)
            if m > cap * (1 + 1e-9) and m > 0:
                f.loc[f.importer == region, "quantity_t"] *= cap / m
                changed = True
        if not changed:
            break
    return f


# --------------------------------------------------------------------------------------------------------
# Shares: processing output by region, end uses, regional consumption proxies
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    key: str
    value: float
    source: str
    basis: str
    note: str = ""
    low: float | None = None
    high: float | None = None


REFINE_SHARES: dict[tuple[str, str], list[Share]] = {
    ("ndpr", "refine"): [
        Share(
            "CHN",
            0.91,
            "IEA-GCMO2025;IEA-2025-10",
            "sourced",
            "China's share of refined rare-earth output (2024), applied to NdPr",
        ),
        Share(
            "USA",
            math.nan,
            "MP-2024",
            "assumption",
            "MP Materials 2024 NdPr oxide output ~1,300 t (set from tonnes below)",
        ),
        Share(
            "MYS",
            math.nan,
            "LYNAS-FY2024",
            "derived",
            "Lynas FY2024 NdPr output 5,655 t (Malaysia separation; fiscal year to Jun 2024) (set from tonnes below)",
        ),
    ],
    ("dy", "refine"): [
        Share(
            "CHN",
            0.99,
            "IEA-GCMO2025;CRITMIN",
            "assumption",
            "virtually all heavy rare-earth separation was "
            "in China in 2024 (Lynas first separated Dy/Tb in Malaysia in 2025, costs.csv); 1% left to ROW",
            0.97,
            1.0,
        ),
    ],
    ("tb", "refine"): [
        Share("CHN", 0.99, "IEA-GCMO2025;CRITMIN", "assumption", "as for Dy", 0.97, 1.0),
    ],
    **{
        (m, "magnet"): [
            Share("CHN", 0.94, "IEA-2025-10", "sourced", "China's share of NdFeB/permanent magnet production (2024)"),
            Share(
                "JPN",
                0.05,
                "NEWS-2022-MAGNETS;CRITMIN",
                "assumption",
                "Japan 6% of metal, alloy and magnet "
                "conversion in 2022 (secondary), lowered to fit China's 94% in 2024",
                0.03,
                0.06,
            ),
            Share(
                "EU",
                0.01,
                "CRITMIN",
                "assumption",
                "remainder after China and Japan (European sintered magnet makers)",
                0.0,
                0.02,
            ),
        ]
        for m in REE
    },
    ("graphite", "refine"): [
        Share(
            "CHN", 0.95, "IEA-GCMO2025", "sourced", "'China produces over 95% of battery-grade graphite' (lower bound)"
        ),
    ],
    ("cobalt", "refine"): [
        Share("CHN", 0.78, "IEA-GCMO2025", "sourced", "China 78% of refined cobalt (2024)"),
        Share(
            "EU",
            0.10,
            "IEA-GCMO2025;CRITMIN",
            "assumption",
            "Finland 10% of refined cobalt in 2023 (older IEA vintage via Visual Capitalist), used for 2024",
            0.07,
            0.12,
        ),
    ],
    ("nickel", "refine"): [
        Share(
            "IDN",
            1600 / 3516,
            "INSG-2024-09",
            "derived",
            "INSG Sep-2024 forecast: Indonesia 1,600 kt of 3,516 kt primary nickel (IEA: 'almost 45%')",
        ),
        Share("CHN", 1035 / 3516, "INSG-2024-09", "derived", "INSG Sep-2024 forecast: China 1,035 kt of 3,516 kt"),
        Share(
            "RUS",
            0.10,
            "IEA-GCMO2025",
            "assumption",
            "Russia ~10% (social-media summary of the IEA GCMO 2025; shaky)",
            0.06,
            0.12,
        ),
    ],
    ("lithium", "refine"): [
        Share("CHN", 0.70, "IEA-GCMO2025", "sourced", "China produces 70% of global lithium chemicals (2024)"),
        Share(
            "CHL",
            math.nan,
            "USGS-MCS2026-DR;CRITMIN",
            "derived",
            "Chilean brine is converted in Chile: "
            "set equal to Chile's mine output (the IEA 2022-23 share of 29% predates the 2024 growth)",
        ),
        Share(
            "ARG",
            math.nan,
            "USGS-MCS2026-DR;CRITMIN",
            "derived",
            "Argentine brine output is converted in Argentina: set equal to Argentina's mine output",
        ),
    ],
    ("gallium", "refine"): [
        Share(
            "CHN",
            0.75,
            "USGS-MCS2025-GA;CRITMIN",
            "assumption",
            "USGS names Canada, China, Japan, Slovakia "
            "and the US as principal high-purity producers without a split; China assumed dominant",
            0.6,
            0.85,
        ),
        Share(
            "JPN", 0.10, "USGS-MCS2025-GA;CRITMIN", "assumption", "principal producer (no split published)", 0.05, 0.15
        ),
        Share("EU", 0.05, "USGS-MCS2025-GA;CRITMIN", "assumption", "Slovakia (no split published)", 0.02, 0.1),
        Share(
            "USA", 0.05, "USGS-MCS2025-GA;CRITMIN", "assumption", "principal producer (no split published)", 0.02, 0.1
        ),
    ],
}

#: End-use shares by mineral: the stage each sector consumes at and its share of that stage's consumption.
#: For rare earths, ``refine_other`` is the share of refined output used outside magnets.
END_USE: dict[str, dict[str, Any]] = {
    "ndpr": {
        "sector_stage": {
            "other": "refine",
            "defense": "magnet",
            "ev": "magnet",
            "wind": "magnet",
            "electronics": "magnet",
        },
        "refine_other": Share(
            "other",
            0.12,
            "CRITMIN",
            "assumption",
            "non-magnet uses of NdPr (glass, ceramics, alloys, catalysts)",
            0.05,
            0.2,
        ),
        "shares": {
            "magnet": [
                Share(
                    "ev",
                    0.12,
                    "IEA-MAGNET-2024;CRITMIN",
                    "assumption",
                    "IEA: EVs 7% of magnet REE demand in 2023; raised for 2024 EV growth",
                    0.07,
                    0.25,
                ),
                Share("wind", 0.10, "CRITMIN", "assumption", "permanent-magnet wind generators", 0.05, 0.15),
                Share("defense", 0.03, "CRITMIN", "assumption", "defence systems", 0.01, 0.05),
                Share(
                    "electronics",
                    0.75,
                    "CRITMIN",
                    "derived",
                    "remainder: electronics, appliances, industrial and non-traction automotive motors",
                ),
            ],
        },
    },
    "lithium": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share(
                    "ev",
                    0.82,
                    "LIBERUM-2024;USGS-MCS2025-LI;CRITMIN",
                    "assumption",
                    "EV batteries 78% (Liberum 2024) plus stationary storage; all batteries 87% (USGS 2024)",
                    0.78,
                    0.85,
                ),
                Share(
                    "electronics",
                    0.05,
                    "USGS-MCS2025-LI;CRITMIN",
                    "derived",
                    "portable batteries: batteries 87% (USGS) less EV and storage 82%",
                ),
                Share("defense", 0.005, "CRITMIN", "assumption", "defence batteries and alloys", 0.0, 0.01),
                Share(
                    "other",
                    0.125,
                    "USGS-MCS2025-LI",
                    "derived",
                    "ceramics and glass 5%, greases 2%, air "
                    "treatment 1%, casting powders 1%, medical 1%, other 3% (USGS 2024), less defence",
                ),
            ],
        },
    },
    "graphite": {
        "sector_stage": {"ev": "refine", "electronics": "refine", "other": "mine", "defense": "mine", "wind": "mine"},
        "shares": {
            "refine": [
                Share("ev", 0.90, "CRITMIN", "assumption", "EV and stationary-storage battery anodes", 0.8, 0.95),
                Share("electronics", 0.10, "CRITMIN", "assumption", "portable-battery anodes", 0.05, 0.2),
            ],
            "mine": [
                Share(
                    "other",
                    0.995,
                    "CRITMIN",
                    "derived",
                    "refractories, foundries, lubricants, other industrial uses of concentrate (remainder)",
                ),
                Share("defense", 0.005, "CRITMIN", "assumption", "defence uses", 0.0, 0.01),
            ],
        },
    },
    "cobalt": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share("ev", 0.43, "CI-CMR2024", "sourced", "EVs 43% of total cobalt demand (2024)"),
                Share(
                    "electronics",
                    0.30,
                    "CI-CMR2023;CI-CMR2024",
                    "derived",
                    "battery-related 73% (2023) less EVs 43%: portable electronics and storage batteries",
                ),
                Share("defense", 0.03, "CRITMIN", "assumption", "military superalloys and magnets", 0.01, 0.05),
                Share(
                    "other",
                    0.24,
                    "CI-CMR2024;CRITMIN",
                    "derived",
                    "superalloys, hard metals, catalysts, pigments (remainder)",
                ),
            ],
        },
    },
    "nickel": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share("ev", 0.15, "PROJECTBLUE-2024", "sourced", "batteries 15% of primary nickel demand (2023)"),
                Share("defense", 0.01, "CRITMIN", "assumption", "military alloys", 0.005, 0.02),
                Share("electronics", 0.01, "CRITMIN", "assumption", "electronics and plating", 0.005, 0.02),
                Share(
                    "other",
                    0.83,
                    "CRITMIN",
                    "derived",
                    "stainless steel (~74% in 2020, McKinsey), alloys, plating (remainder)",
                ),
            ],
        },
    },
    "gallium": {
        "sector_stage": {
            "electronics": "refine",
            "defense": "refine",
            "ev": "refine",
            "wind": "refine",
            "other": "mine",
        },
        "shares": {
            "refine": [
                Share(
                    "electronics",
                    0.88,
                    "USGS-MCS2025-GA;CRITMIN",
                    "assumption",
                    "integrated circuits and optoelectronics (US: 79% + 20%)",
                    0.8,
                    0.95,
                ),
                Share("defense", 0.07, "CRITMIN", "assumption", "GaN/GaAs radar and military electronics", 0.03, 0.12),
                Share("ev", 0.05, "CRITMIN", "assumption", "power electronics for EVs and chargers", 0.0, 0.1),
            ],
            "mine": [
                Share(
                    "other",
                    1.0,
                    "CRITMIN",
                    "derived",
                    "low-purity gallium used directly (alloys, NdFeB "
                    "additive) or stocked: world low-purity output less high-purity output",
                ),
            ],
        },
    },
    "germanium": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share(
                    "electronics",
                    0.55,
                    "AMECO-2019;CRITMIN",
                    "assumption",
                    "fibre optics 33.4% (2017) plus semiconductors and solar cells",
                    0.45,
                    0.65,
                ),
                Share(
                    "defense",
                    0.20,
                    "AMECO-2019;CRITMIN",
                    "assumption",
                    "most of infrared optics (26.2% in 2017) is military",
                    0.1,
                    0.26,
                ),
                Share("other", 0.25, "CRITMIN", "derived", "PET catalysts and other uses (remainder)"),
            ],
        },
    },
    "antimony": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share(
                    "ev",
                    0.17,
                    "SB-CHINA-SPLIT",
                    "assumption",
                    "lead-acid battery alloys (China: battery alloys 17%)",
                    0.1,
                    0.25,
                ),
                Share(
                    "defense",
                    0.05,
                    "USGS-MCS2025-SB;CRITMIN",
                    "assumption",
                    "ammunition and primers (part of US 'metal products' 40%)",
                    0.02,
                    0.1,
                ),
                Share(
                    "electronics",
                    0.15,
                    "CRITMIN",
                    "assumption",
                    "flame retardants in electronics and solar glass",
                    0.08,
                    0.25,
                ),
                Share(
                    "other",
                    0.63,
                    "SB-CHINA-SPLIT",
                    "derived",
                    "flame retardants in plastics and textiles, stabilisers, catalysts, glass (remainder)",
                ),
            ],
        },
    },
    "tungsten": {
        "sector_stage": dict.fromkeys(SECTORS, "refine"),
        "shares": {
            "refine": [
                Share("defense", 0.07, "CRITMIN", "assumption", "munitions and armour", 0.03, 0.12),
                Share("electronics", 0.03, "CRITMIN", "assumption", "semiconductor and electrical uses", 0.01, 0.05),
                Share(
                    "other",
                    0.90,
                    "ROSKILL-W-2017",
                    "derived",
                    "cemented carbides (>50%), steels, alloys, mill products (remainder)",
                ),
            ],
        },
    },
}
for _m, _dy in (("dy", 0.10), ("tb", 0.40)):
    END_USE[_m] = {
        "sector_stage": END_USE["ndpr"]["sector_stage"],
        "refine_other": Share(
            "other",
            _dy,
            "CRITMIN",
            "assumption",
            "non-magnet uses (Dy: lasers, nuclear; Tb: phosphors, magnetostrictive alloys)",
            _dy / 2,
            _dy * 1.5,
        ),
        "shares": {
            "magnet": [
                Share(
                    "ev",
                    0.25,
                    "CRITMIN",
                    "assumption",
                    "Dy/Tb concentrate in high-temperature grades (EV traction motors)",
                    0.15,
                    0.35,
                ),
                Share("wind", 0.15, "CRITMIN", "assumption", "wind generators", 0.08, 0.2),
                Share("defense", 0.05, "CRITMIN", "assumption", "defence systems", 0.02, 0.08),
                Share("electronics", 0.55, "CRITMIN", "derived", "remainder: electronics, industrial motors"),
            ],
        },
    }

#: Regional proxies for consumption (shares of world consumption of a sector), assumptions unless stated.
PROXY: dict[str, tuple[dict[str, float], str, str, str]] = {
    "defense": (
        {
            "USA": 0.37,
            "CHN": 0.12,
            "EU": 0.14,
            "RUS": 0.05,
            "SAU": 0.03,
            "JPN": 0.02,
            "KOR": 0.02,
            "AUS": 0.01,
            "ROW": 0.24,
        },
        "CRITMIN",
        "assumption",
        "shares of world military expenditure in 2024, rounded (SIPRI magnitudes; not in the shared source tables)",
    ),
    "ev_battery": (
        {"CHN": 0.80, "KOR": 0.08, "JPN": 0.05, "EU": 0.03, "USA": 0.02, "ROW": 0.02},
        "IEA-2025-10;CRITMIN",
        "assumption",
        "first use in cathode, anode and cell making: China "
        "~80% of key midstream segments and 95% of cathode precursors (IEA, Oct 2025)",
    ),
    "ev_motor": (
        {"CHN": 0.59, "EU": 0.13, "USA": 0.13, "ROW": 0.15},
        "IEA-EVBAT2024",
        "assumption",
        "EV traction motors located with EV markets: IEA shares of 2024 "
        "EV battery demand (China 59%, EU 13%, US 13%, rest 15%)",
    ),
    "wind": (
        {"CHN": 0.65, "EU": 0.15, "USA": 0.07, "ROW": 0.13},
        "CRITMIN",
        "assumption",
        "wind turbine manufacturing, China-led",
    ),
    "electronics": (
        {"CHN": 0.52, "KOR": 0.10, "JPN": 0.08, "USA": 0.07, "EU": 0.06, "MYS": 0.03, "THA": 0.02, "ROW": 0.12},
        "CRITMIN",
        "assumption",
        "electronics and semiconductor manufacturing (ROW includes Taiwan, Viet Nam, India, Mexico)",
    ),
    "magnet_electronics": (
        {"CHN": 0.70, "JPN": 0.07, "KOR": 0.05, "EU": 0.06, "USA": 0.04, "THA": 0.02, "MYS": 0.01, "ROW": 0.05},
        "GVR-2024;CRITMIN",
        "assumption",
        "magnet users in electronics, appliances and "
        "industrial motors; with the other sectors it matches the NdFeB market split "
        "Asia-Pacific 85%, Europe 8%, North America 5% (Grand View, 2024)",
    ),
    "other": (
        {"CHN": 0.55, "EU": 0.12, "USA": 0.08, "JPN": 0.05, "KOR": 0.04, "RUS": 0.02, "IDN": 0.02, "ROW": 0.12},
        "CRITMIN",
        "assumption",
        "industrial use of metals and chemicals, China about half",
    ),
    "nickel": (
        {"CHN": 0.638, "IDN": 0.06, "EU": 0.09, "JPN": 0.05, "KOR": 0.04, "USA": 0.04, "ROW": 0.082},
        "INSG-2024-04;CRITMIN",
        "assumption",
        "China 63.8% of world primary nickel use in 2024 (INSG "
        "Apr-2024 forecast, sourced); the rest split by stainless and alloy making (assumption)",
    ),
    "germanium": (
        {"CHN": 0.50, "USA": 0.15, "EU": 0.15, "RUS": 0.05, "JPN": 0.05, "ROW": 0.10},
        "USGS-MCS2025-GE;CRITMIN",
        "assumption",
        "China's Ge exports went to Belgium 33%, Germany 32%, "
        "Russia 25%, Japan 6% (Jan-Aug 2024); US imports 33 t Ge (2024)",
    ),
    "gallium_lowpurity": (
        {"CHN": 0.85, "JPN": 0.05, "ROW": 0.10},
        "CRITMIN",
        "assumption",
        "low-purity gallium used or stocked mostly in China",
    ),
    "antimony": (
        {"CHN": 0.32, "USA": 0.20, "EU": 0.18, "JPN": 0.07, "KOR": 0.05, "ROW": 0.18},
        "USGS-MCS2025-SB;SB-CHINA-SPLIT;CRITMIN",
        "assumption",
        "US apparent consumption 24,000 t of "
        "~119,000 t (USGS); US, Japan, Korea and Western Europe >50% of world use (undated)",
    ),
    "tungsten": (
        {"CHN": 0.60, "EU": 0.12, "USA": 0.08, "JPN": 0.08, "KOR": 0.03, "ROW": 0.09},
        "ROSKILL-W-2017;CRITMIN",
        "assumption",
        "China 'nearly 60%' of world tungsten use (2016)",
    ),
}


def proxy_for(mineral: str, sector: str) -> str:
    """Which regional proxy a (mineral, sector) consumption uses."""
    if sector == "defense":
        return "defense"
    if mineral in REE:
        return {"ev": "ev_motor", "wind": "wind", "electronics": "magnet_electronics"}.get(sector, "other")
    if mineral == "nickel":
        return "nickel"
    if mineral == "germanium":
        return "germanium"
    if mineral == "antimony":
        return "antimony"
    if mineral == "tungsten":
        return "tungsten"
    if mineral == "gallium" and sector == "other":
        return "gallium_lowpurity"
    if sector == "ev":
        return "ev_battery"
    if sector == "electronics":
        return "electronics"
    if sector == "wind":
        return "wind"
    return "other"


# --------------------------------------------------------------------------------------------------------
# Prices (USD per tonne of contained element)
# --------------------------------------------------------------------------------------------------------

MAGNET_CONVERSION = Param(
    80_000.0,
    "assumption",
    "CRITMIN",
    "oxide-to-magnet conversion (metal, alloy, "
    "sintering) ~25 USD/kg magnet over ~0.31 kg RE/kg magnet, added to the refined price "
    "of each contained rare earth",
    50_000.0,
    130_000.0,
)
REE_MINE_PAYABLE = Param(
    0.5,
    "assumption",
    "CRITMIN",
    "mine-stage value of contained rare earths as a share "
    "of the separated-oxide price (cracking and separation margin)",
    0.3,
    0.7,
)

# --------------------------------------------------------------------------------------------------------
# Elasticities
# --------------------------------------------------------------------------------------------------------

SUPPLY_SR = {
    "mine": Param(0.216, "assumption", "GLOMBO", "copper mine median (IQR 0.173-0.305), used by analogy", 0.1, 0.35),
    "refine": Param(0.2, "assumption", "CRITMIN", "processing output response within a year", 0.05, 0.5),
    "magnet": Param(
        0.3, "assumption", "CRITMIN", "magnet capacity runs well below nameplate, so output responds", 0.1, 0.6
    ),
}
SUPPLY_LR = {
    "mine": Param(1.16, "assumption", "GLOMBO", "copper mine long-run median (IQR 0.401-1.662), by analogy", 0.4, 1.66),
    "refine": Param(1.5, "assumption", "CRITMIN", "processing capacity builds in 2-3 years", 0.5, 3.0),
    "magnet": Param(2.0, "assumption", "CRITMIN", "magnet plants build quickly", 1.0, 4.0),
}
BYPRODUCT_MINE_SR = Param(
    0.1,
    "assumption",
    "CRITMIN",
    "by-product or co-product output follows its host "
    "(cobalt: copper/nickel; gallium: alumina; germanium: zinc; rare earths: joint "
    "products under quota)",
    0.03,
    0.2,
)
NICKEL_MINE_SR = Param(
    0.133, "sourced", "GLOMBO", "single study (Choe 1990, OLS short run, 1963-1989); range is an assumption", 0.05, 0.3
)
DEMAND_SR = {
    "defense": Param(-0.02, "assumption", "CRITMIN", "essential, small cost share", -0.05, -0.005),
    "ev": Param(
        -0.10, "assumption", "CRITMIN", "chemistry and design substitution within a year is limited", -0.3, -0.03
    ),
    "wind": Param(-0.08, "assumption", "CRITMIN", "generator choice fixed for projects under way", -0.2, -0.02),
    "electronics": Param(-0.05, "assumption", "CRITMIN", "small share of product cost", -0.15, -0.01),
    "other": Param(-0.15, "assumption", "CRITMIN", "industrial uses with substitutes", -0.4, -0.05),
}
DEMAND_LR = {
    "defense": Param(
        -0.10,
        "assumption",
        "GLOMBO;CRITMIN",
        "anchored on metals' long-run medians (copper -0.328, nickel -0.102)",
        -0.3,
        -0.03,
    ),
    "ev": Param(-0.6, "assumption", "CRITMIN", "chemistry shifts (LFP, sodium-ion) and magnet-free motors", -1.2, -0.3),
    "wind": Param(-0.4, "assumption", "CRITMIN", "geared and electrically excited generators", -0.8, -0.15),
    "electronics": Param(
        -0.3,
        "assumption",
        "GLOMBO;CRITMIN",
        "anchored on the copper long-run median -0.328 (IQR -0.705 to -0.193)",
        -0.7,
        -0.1,
    ),
    "other": Param(-0.5, "assumption", "GLOMBO;CRITMIN", "anchored on the copper long-run IQR", -0.9, -0.2),
}
NICKEL_DEMAND_SR = Param(
    -0.055,
    "sourced",
    "GLOMBO",
    "nickel short-run median of 7 estimates (IQR -0.061 to "
    "0.036; the positive upper quartile is replaced by an assumed bound)",
    -0.15,
    -0.02,
)
NICKEL_DEMAND_LR = Param(-0.102, "sourced", "GLOMBO", "nickel long-run median of 3 estimates (IQR)", -0.103, -0.081)

# --------------------------------------------------------------------------------------------------------
# Demand growth
# --------------------------------------------------------------------------------------------------------

BASE_GROWTH = {"ev": 0.10, "wind": 0.05, "electronics": 0.03, "defense": 0.03, "other": 0.015}
#: (mineral) -> {year: total demand index anchor}
#: Only the GCMO 2025 STEPS 2040 multiples are used, plus 2030 points where they agree with them (lithium,
#: graphite); the 2030 points for cobalt and rare earths come from an older IEA baseline and, combined with
#: the 2040 STEPS multiples, would make demand fall after 2030.
GROWTH_ANCHORS: dict[str, dict[int, float]] = {
    "lithium": {2030: 2.46, 2040: 5.0},
    "graphite": {2030: 1.625, 2040: 2.0},
    "nickel": {2040: 2.0},
    "cobalt": {2040: 1.55},
    "ndpr": {2040: 1.55},
    "dy": {2040: 1.55},
    "tb": {2040: 1.55},
}
#: Mineral-specific base rates where the sector means something else (antimony 'ev' = lead-acid batteries).
BASE_GROWTH_OVERRIDE = {("antimony", "ev"): 0.01}


# --------------------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------------------


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two (lat, lon) points (haversine, Earth radius 6371 km)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


ROUTE_FACTOR = Param(1.3, "assumption", "CRITMIN", "sea and land routes are longer than the great circle", 1.1, 1.6)


def transport_params() -> dict[str, Any]:
    """Transport formula parameters, with the freight benchmarks they are derived from."""
    mombasa, qingdao = (-4.04, 39.67), (36.07, 120.38)
    shanghai, la, mumbai = (31.23, 121.47), (33.74, -118.27), (18.95, 72.83)
    km_bulk = great_circle_km(mombasa, qingdao) * ROUTE_FACTOR.value
    bulk_base = 5.0
    bulk_rate = (28.0 - bulk_base) / km_bulk
    km_cn_in = great_circle_km(shanghai, mumbai) * ROUTE_FACTOR.value
    km_cn_us = great_circle_km(shanghai, la) * ROUTE_FACTOR.value
    cont_base = 30.0
    # a 20-ft container carries ~20 t; the 2020 quotes were spike levels 'more than double previous costs'
    per_t_in = 2000.0 / 20.0 / 2.0
    per_t_us = 4500.0 / 20.0 / 2.0
    cont_rate = ((per_t_in - cont_base) / km_cn_in + (per_t_us - cont_base) / km_cn_us) / 2.0

    def p(value: float, basis: str, source: str, note: str, low: float, high: float) -> dict[str, Any]:
        return {"value": round(value, 6), "low": low, "high": high, "basis": basis, "source": source, "note": note}

    return {
        "formula": "cost[o, d] = base_usd_per_t[mode] + usd_per_t_km[mode] * route_factor * "
        "great_circle_km(o, d) for o != d, 0 for o == d; USD per tonne of shipped product. Per tonne of "
        "contained element multiply by freight.csv gross_per_contained of the stage.",
        "default_mode": "container",
        "distance": "haversine great-circle distance between the regions' representative points "
        "(regions.csv lat/lon), Earth radius 6371 km",
        "route_factor": p(ROUTE_FACTOR.value, "assumption", "CRITMIN", ROUTE_FACTOR.note, 1.1, 1.6),
        "modes": {
            "bulk": {
                "base_usd_per_t": p(bulk_base, "assumption", "CRITMIN", "port handling at both ends", 2.0, 15.0),
                "usd_per_t_km": p(
                    bulk_rate,
                    "derived",
                    "ARGUS-FREIGHT-2021;CRITMIN",
                    f"Kenya-China bulk rate 28 USD/t (c. 2020) less base over "
                    f"{km_bulk:.0f} km (Mombasa-Qingdao great circle x route factor); the Sep-2021 "
                    f"spike was 90 USD/t",
                    round(bulk_rate * 0.6, 6),
                    round(bulk_rate * 3.5, 6),
                ),
            },
            "container": {
                "base_usd_per_t": p(
                    cont_base, "assumption", "CRITMIN", "handling, documentation and inland legs", 10.0, 60.0
                ),
                "usd_per_t_km": p(
                    cont_rate,
                    "derived",
                    "FASTMARKETS-FREIGHT-2020;CRITMIN",
                    "20-ft container China-India 2,000 USD and China-US 4,500 USD (Nov 2020 spike, "
                    "'more than double previous costs', so halved), ~20 t per container, less base, "
                    "per route km; mean of the two routes",
                    round(cont_rate * 0.5, 6),
                    round(cont_rate * 2.5, 6),
                ),
            },
        },
    }


#: Gross tonnes shipped per tonne of contained element, and the freight mode, per (mineral, stage).
FREIGHT: dict[tuple[str, str], tuple[str, Param]] = {
    **{
        (m, "mine"): (
            "bulk",
            Param(
                1 / (0.6 * 0.85),
                "assumption",
                "CRITMIN",
                "concentrate ~60% REO; freight allocated across co-products by REO mass",
                1.2,
                4.0,
            ),
        )
        for m in REE
    },
    **{
        (m, "refine"): (
            "container",
            Param(1 / REO_ELEMENT[m], "derived", "STOICH", "separated oxide per t element", 1 / REO_ELEMENT[m], 1.3),
        )
        for m in REE
    },
    **{
        (m, "magnet"): (
            "container",
            Param(
                1 / 0.31,
                "assumption",
                "CRITMIN",
                "NdFeB magnet ~31% rare earths; freight allocated by rare-earth mass",
                3.0,
                3.6,
            ),
        )
        for m in REE
    },
    ("lithium", "mine"): (
        "bulk",
        Param(
            1 / (0.06 * LI2O),
            "derived",
            "STOICH;CRITMIN;ROSKILL-LI-FREIGHT",
            "spodumene concentrate SC6 (6% Li2O); brine is converted where it is pumped; Roskill's ~200 USD/t LCE "
            "spodumene freight WA-China is a cross-check of the resulting cost",
            20.0,
            40.0,
        ),
    ),
    ("lithium", "refine"): (
        "container",
        Param(1 / LI2CO3, "derived", "STOICH", "lithium carbonate", 1 / 0.2898, 1 / LIOH_H2O),
    ),
    ("graphite", "mine"): ("bulk", Param(1.0, "assumption", "CRITMIN", "concentrate counted gross", 1.0, 1.1)),
    ("graphite", "refine"): ("container", Param(1.0, "assumption", "CRITMIN", "spherical graphite", 1.0, 1.1)),
    ("cobalt", "mine"): ("container", Param(1 / 0.3, "assumption", "CRITMIN", "hydroxide ~30% Co, in bags", 2.5, 5.0)),
    ("cobalt", "refine"): (
        "container",
        Param(2.0, "assumption", "CRITMIN", "mix of metal (1 t/t) and sulphate (~4.8 t/t)", 1.0, 4.8),
    ),
    ("nickel", "mine"): (
        "bulk",
        Param(
            70.0,
            "assumption",
            "CRITMIN",
            "between laterite ore (~140 t/t at 0.7% Ni) and concentrates/intermediates (~3-8 t/t)",
            8.0,
            143.0,
        ),
    ),
    ("nickel", "refine"): (
        "container",
        Param(2.0, "assumption", "CRITMIN", "class 1 metal 1 t/t, NPI ~8 t/t", 1.0, 8.0),
    ),
    ("gallium", "mine"): ("container", Param(1.0, "assumption", "CRITMIN", "metal", 1.0, 1.0)),
    ("gallium", "refine"): ("container", Param(1.0, "assumption", "CRITMIN", "metal", 1.0, 1.0)),
    ("germanium", "mine"): (
        "container",
        Param(15.0, "assumption", "CRITMIN", "germanium concentrates and residues", 5.0, 50.0),
    ),
    ("germanium", "refine"): ("container", Param(1.0, "assumption", "CRITMIN", "metal and dioxide", 1.0, 1.45)),
    ("antimony", "mine"): ("bulk", Param(2.0, "assumption", "CRITMIN", "concentrate ~50% Sb", 1.7, 10.0)),
    ("antimony", "refine"): (
        "container",
        Param(1.2, "assumption", "CRITMIN", "trioxide 83.5% Sb, metal 100%", 1.0, 1.2),
    ),
    ("tungsten", "mine"): (
        "bulk",
        Param(1 / (0.65 * WO3), "assumption", "STOICH;CRITMIN", "concentrate 65% WO3", 1.6, 4.2),
    ),
    ("tungsten", "refine"): ("container", Param(1 / (0.885 * WO3), "derived", "STOICH", "APT ~88.5% WO3", 1.3, 1.5)),
}

# --------------------------------------------------------------------------------------------------------
# Capacity utilisation
# --------------------------------------------------------------------------------------------------------

UTILISATION = {
    "mine": Param(
        0.86, "assumption", "ICSG-2025", "copper mine utilisation ~86% (2004-2013 average), by analogy", 0.75, 0.95
    ),
    "refine": Param(
        0.843, "assumption", "ICSG-2025", "copper refinery utilisation 84.3% (2024), by analogy", 0.6, 0.95
    ),
    "magnet": Param(0.75, "assumption", "CRITMIN", "magnet plants run below nameplate", 0.5, 0.9),
}


# ========================================================================================================
# The build
# ========================================================================================================


def build(sources_dir: Path, out_dir: Path) -> dict[str, pd.DataFrame]:
    """Build every file of the default world into ``out_dir``; returns the tables written."""
    src = Sources.read(sources_dir)
    t = Tables()
    prod, country_detail = mine_output(src, t)
    flows_raw = baci_flows(src)
    notes_extra: dict[str, str] = {}

    consumption: dict[tuple[str, str, str], dict[str, float]] = {}  # (mineral, stage, sector) -> region
    cons_prov: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    trade_final: dict[tuple[str, str], pd.DataFrame] = {}

    def world(q: Mapping[str, float]) -> float:
        return float(sum(q.values()))

    def put_prod(m: str, s: str, q: dict[str, float], prov: dict[str, tuple[str, str, str]]) -> None:
        prod[(m, s)] = q
        for r in REGIONS:
            if q[r] > 0:
                source, basis, note = prov[r]
                t.add(
                    "production", mineral=m, stage=s, region=r, quantity_t=q[r], source=source, basis=basis, note=note
                )

    def add_share_rows(m: str, s: str, kind: str, group: str, shares: Iterable[Share]) -> None:
        for sh in shares:
            if math.isnan(sh.value):
                continue
            t.add(
                "shares",
                mineral=m,
                stage=s,
                kind=kind,
                group=group,
                key=sh.key,
                share=sh.value,
                low=sh.low,
                high=sh.high,
                source=sh.source,
                basis=sh.basis,
                note=sh.note,
            )

    def split_by_shares(
        m: str,
        s: str,
        total: float,
        shares: list[Share],
        fixed_t: dict[str, tuple[float, str, str, str]] | None = None,
        remainder_to: dict[str, float] | None = None,
        remainder_prov: tuple[str, str, str] | None = None,
    ) -> None:
        """Processing output by region: explicit shares, fixed tonnages, remainder to ROW (or a weighting)."""
        q = {r: 0.0 for r in REGIONS}
        prov: dict[str, tuple[str, str, str]] = {}
        for sh in shares:
            if not math.isnan(sh.value):
                q[sh.key] = sh.value * total
                prov[sh.key] = (
                    sh.source,
                    "derived" if sh.basis == "sourced" else sh.basis,
                    f"{sh.value:.4g} x world {s} output {total:,.1f} t ({sh.note})",
                )
        for region, (tonnes, source, basis, note) in (fixed_t or {}).items():
            q[region] = tonnes
            prov[region] = (source, basis, note)
        rest = total - sum(q.values())
        if rest < -1e-6 * total:
            raise ValueError(f"{m}/{s}: shares exceed the world total")
        rest = max(rest, 0.0)
        if remainder_to:
            wsum = sum(remainder_to.values())
            for region, w in remainder_to.items():
                add = rest * w / wsum if wsum > 0 else 0.0
                q[region] += add
            if remainder_prov:
                for region in remainder_to:
                    if region not in prov:
                        prov[region] = remainder_prov
        else:
            q["ROW"] += rest
            prov.setdefault(
                "ROW",
                (
                    "CRITMIN",
                    "derived",
                    f"remainder of world {s} output after the regions with "
                    f"a published share or tonnage ({rest:,.1f} t)",
                ),
            )
        put_prod(m, s, q, prov)
        add_share_rows(m, s, "production_region", "", shares)

    # ---------------------------------------------------------------------------------------- rare earths
    for m in REE:
        mine = prod[(m, "mine")]
        y_ref = YIELDS[(m, "refine")].value
        refine_total = world(mine) * y_ref
        if m == "ndpr":
            fixed = {
                "USA": (
                    1300.0 * NDPR_OXIDE,
                    "MP-2024;ADAMAS-2026",
                    "assumption",
                    f"MP Materials ~1,300 t NdPr oxide in 2024 x {NDPR_OXIDE:.4f}; check: the rest of US "
                    f"mine NdPr went to China and is ~8% of China's separated NdPr, as Adamas reports 7-9%",
                ),
                "MYS": (
                    5655.0 * NDPR_OXIDE,
                    "LYNAS-FY2024;IEA-GCMO2024",
                    "derived",
                    f"Lynas FY2024 NdPr 5,655 t oxide x {NDPR_OXIDE:.4f} (fiscal year to Jun 2024); IEA put "
                    f"Malaysia at 5% of refined rare earths in 2023",
                ),
            }
            shares = REFINE_SHARES[(m, "refine")]
            split_by_shares(m, "refine", refine_total, shares, fixed)
        else:
            split_by_shares(m, "refine", refine_total, REFINE_SHARES[(m, "refine")])
        other_share = END_USE[m]["refine_other"]
        magnet_in = refine_total * (1 - other_share.value)
        magnet_total = magnet_in * YIELDS[(m, "magnet")].value
        split_by_shares(m, "magnet", magnet_total, REFINE_SHARES[(m, "magnet")])
        add_share_rows(m, "refine", "end_use", "", [other_share])

    # ---------------------------------------------------------------------------------------- lithium
    li_mine = prod[("lithium", "mine")]
    li_total = world(li_mine) * YIELDS[("lithium", "refine")].value
    split_by_shares(
        "lithium",
        "refine",
        li_total,
        REFINE_SHARES[("lithium", "refine")],
        {
            "CHL": (
                li_mine["CHL"],
                "USGS-MCS2026-DR;CRITMIN",
                "derived",
                "Chilean brine converted in Chile: equal to Chile's mine output (2024)",
            ),
            "ARG": (
                li_mine["ARG"],
                "USGS-MCS2026-DR;CRITMIN",
                "derived",
                "Argentine brine converted in Argentina: equal to Argentina's mine output (2024)",
            ),
        },
    )
    # remainder: regions that export lithium chemicals in BACI get at least their exports; the rest to ROW
    li_flows = flows_raw[("lithium", "refine")]
    li_prod = prod[("lithium", "refine")]
    rest = li_prod["ROW"]
    exporters = li_flows.groupby("exporter").quantity_t.sum()
    # a region needs at least 100 t Li of exports to count as a producer; smaller flows are re-exports
    candidates = {
        str(r): float(v) for r, v in exporters.items() if r not in ("CHN", "CHL", "ARG", "ROW") and v >= 100.0
    }
    need = sum(candidates.values())
    scale = min(1.0, rest / need) if need > 0 else 0.0
    t.rows["production"] = [
        row
        for row in t.rows["production"]
        if not (row["mineral"] == "lithium" and row["stage"] == "refine" and row["region"] == "ROW")
    ]
    for r, v in sorted(candidates.items()):
        li_prod[r] = v * scale
        t.add(
            "production",
            mineral="lithium",
            stage="refine",
            region=r,
            quantity_t=v * scale,
            source=_cite("CEPII-BACI", "CRITMIN"),
            basis="derived",
            note=f"no published output: set to the region's observed 2024 exports of lithium chemicals "
            f"(BACI, {v:,.1f} t Li) as a lower bound, taken from the world remainder",
        )
    li_prod["ROW"] = rest - sum(v * scale for v in candidates.values())
    if li_prod["ROW"] <= 1e-6 * rest:
        li_prod["ROW"] = 0.0
    else:
        t.add(
            "production",
            mineral="lithium",
            stage="refine",
            region="ROW",
            quantity_t=li_prod["ROW"],
            source=_cite("IEA-GCMO2025", "CRITMIN"),
            basis="derived",
            note="remainder of world lithium chemical output after China (70%), Chile and Argentina (own brine) "
            "and the exporters above",
        )
    # consumption: apparent consumption (output + observed imports - observed exports), then end-use split
    li_trade = reconcile_trade(li_flows, li_prod, {r: math.inf for r in REGIONS})
    imp = li_trade.groupby("importer").quantity_t.sum()
    exp = li_trade.groupby("exporter").quantity_t.sum()
    apparent = fold_small({r: li_prod[r] + float(imp.get(r, 0.0)) - float(exp.get(r, 0.0)) for r in REGIONS})
    li_trade = reconcile_trade(li_trade, li_prod, apparent)
    trade_final[("lithium", "refine")] = li_trade
    for sh in END_USE["lithium"]["shares"]["refine"]:
        key = ("lithium", "refine", sh.key)
        consumption[key] = {r: apparent[r] * sh.value for r in REGIONS}
        cons_prov[key] = (
            _cite("CEPII-BACI", *sh.source.split(";")),
            "derived",
            f"apparent consumption (refined output + observed imports - observed exports, BACI "
            f"2024; regions under 0.1% of the world folded into ROW) x end-use share {sh.value:g} ({sh.note})",
        )
    add_share_rows("lithium", "refine", "end_use", "", END_USE["lithium"]["shares"]["refine"])

    # ---------------------------------------------------------------------------------------- graphite
    g_mine = prod[("graphite", "mine")]
    y_g = YIELDS[("graphite", "refine")].value
    sne_natural = 0.29e6  # t natural graphite anode material shipped in 2024 (SNE Research)
    split_by_shares("graphite", "refine", sne_natural, REFINE_SHARES[("graphite", "refine")])
    g_ref = prod[("graphite", "refine")]
    for idx, prow in enumerate(t.rows["production"]):
        if prow["mineral"] == "graphite" and prow["stage"] == "refine" and prow["region"] == "CHN":
            t.rows["production"][idx]["source"] = _cite("IEA-GCMO2025", "SNE-2025")
            t.rows["production"][idx]["note"] = (
                "0.95 x world natural-graphite anode output 290,000 t (SNE Research "
                "2024: 0.29 Mt natural of 2.11 Mt anode shipments)"
            )
    g_input = {r: g_ref[r] / y_g for r in REGIONS}
    g_flows = reconcile_trade(flows_raw[("graphite", "mine")], g_mine, {r: math.inf for r in REGIONS})
    imp = g_flows.groupby("importer").quantity_t.sum()
    exp = g_flows.groupby("exporter").quantity_t.sum()
    apparent = {r: g_mine[r] + float(imp.get(r, 0.0)) - float(exp.get(r, 0.0)) for r in REGIONS}
    resid = {r: max(apparent[r] - g_input[r], 0.0) for r in REGIONS}
    target = world(g_mine) - world(g_input)
    k_scale = target / sum(resid.values())
    mine_cons = fold_small({r: resid[r] * k_scale for r in REGIONS})
    use = {r: g_input[r] + mine_cons[r] for r in REGIONS}
    g_flows = reconcile_trade(g_flows, g_mine, use)
    trade_final[("graphite", "mine")] = g_flows
    for sh in END_USE["graphite"]["shares"]["mine"]:
        key = ("graphite", "mine", sh.key)
        consumption[key] = {r: mine_cons[r] * sh.value for r in REGIONS}
        cons_prov[key] = (
            _cite("CEPII-BACI", "USGS-MCS2026", *sh.source.split(";")),
            "derived",
            f"mine output + observed imports - observed exports (BACI 2024) less input to spherical "
            f"graphite, scaled by {k_scale:.3f} to the world balance (regions under 0.1% folded into ROW); "
            f"x end-use share {sh.value:g} "
            f"({sh.note})",
        )
    add_share_rows("graphite", "mine", "end_use", "", END_USE["graphite"]["shares"]["mine"])

    # ---------------------------------------------------------------------------------------- cobalt
    co_mine = prod[("cobalt", "mine")]
    co_demand, co_surplus = 222_000.0, 36_000.0
    co_refined = co_demand + co_surplus
    y_co = co_refined / world(co_mine)
    YIELDS[("cobalt", "refine")] = Param(
        y_co,
        "derived",
        "CI-CMR2024;USGS-MCS2026-DR",
        f"refined supply (Cobalt Institute 2024 demand 222 kt + market surplus 36 kt = 258 kt) / USGS mine "
        f"output {world(co_mine):,.0f} t; absorbs processing losses, intermediate stocks and statistical "
        f"differences",
        0.75,
        1.0,
    )
    split_by_shares("cobalt", "refine", co_refined, REFINE_SHARES[("cobalt", "refine")])
    notes_extra["cobalt"] = "other includes the 2024 market surplus (stock build) of 36 kt"

    # ---------------------------------------------------------------------------------------- nickel
    ni_mine = prod[("nickel", "mine")]
    ni_refined, ni_usage = 3_516_000.0, 3_346_000.0
    y_ni = ni_refined / world(ni_mine)
    YIELDS[("nickel", "refine")] = Param(
        y_ni,
        "derived",
        "INSG-2024-09;USGS-MCS2026",
        f"INSG 2024 primary nickel production 3,516 kt / USGS mine output {world(ni_mine):,.0f} t; absorbs "
        f"losses, stocks and statistical differences",
        0.9,
        1.0,
    )
    # regions without a published share get at least their observed ore imports (converted, x yield)
    ni_flows = flows_raw[("nickel", "mine")]
    ni_flows_x = reconcile_trade(ni_flows, ni_mine, {r: math.inf for r in REGIONS})
    ni_imp = ni_flows_x.groupby("importer").quantity_t.sum()
    fixed_ni = {}
    named = {sh.key for sh in REFINE_SHARES[("nickel", "refine")]}
    share_sum = sum(sh.value for sh in REFINE_SHARES[("nickel", "refine")])
    rest_ni = ni_refined * (1 - share_sum)
    # regions importing under 500 t Ni of ore are not taken to be refiners (their imports are dropped)
    cand = {str(r): float(v) * y_ni for r, v in ni_imp.items() if r not in named and r != "ROW" and v >= 500.0}
    sc = min(1.0, rest_ni / sum(cand.values())) if cand else 0.0
    for r, v in cand.items():
        fixed_ni[r] = (
            v * sc,
            _cite("CEPII-BACI", "CRITMIN"),
            "derived",
            f"no published share: the region's observed 2024 ore and concentrate imports (BACI, "
            f"{v / y_ni:,.0f} t Ni) x yield, a lower bound, taken from the world remainder",
        )
    split_by_shares("nickel", "refine", ni_refined, REFINE_SHARES[("nickel", "refine")], fixed_ni)
    notes_extra["nickel"] = "other includes the 2024 market surplus of 170 kt (INSG production less usage)"

    # ---------------------------------------------------------------------------------------- gallium
    ga_hp = 320.0  # t high-purity refined gallium (USGS MCS2025)
    split_by_shares("gallium", "refine", ga_hp, REFINE_SHARES[("gallium", "refine")])
    for idx, prow in enumerate(t.rows["production"]):
        if prow["mineral"] == "gallium" and prow["stage"] == "refine":
            t.rows["production"][idx]["note"] += "; world high-purity output 320 t (USGS MCS2025, 2024)"

    # ---------------------------------------------------------------------------------------- germanium
    ge_mine = prod[("germanium", "mine")]
    put_prod(
        "germanium",
        "refine",
        dict(ge_mine),
        {
            r: (
                _cite("WMD2026"),
                "sourced" if r not in ("EU", "ROW") else "derived",
                "World Mining Data 2024 'Germanium' (refinery-level output; recycled germanium, ~30% of use in "
                "2019 per USGS, is outside the model)",
            )
            for r in REGIONS
        },
    )

    # ---------------------------------------------------------------------------------------- antimony
    sb_mine = prod[("antimony", "mine")]
    to_china = {"MMR", "TJK", "AUS"}
    sb_ref = {r: 0.0 for r in REGIONS}
    sb_prov: dict[str, tuple[str, str, str]] = {}
    row_to_china = sum(country_detail["antimony"].get(c, 0.0) for c in ("BOL", "KGZ", "LAO", "PAK"))
    for r in REGIONS:
        if r in to_china:
            sb_ref["CHN"] += sb_mine[r]
        elif r == "ROW":
            sb_ref["CHN"] += row_to_china
            sb_ref["ROW"] += sb_mine[r] - row_to_china
        else:
            sb_ref[r] += sb_mine[r]
    sb_note = (
        "no published split of refined antimony: ore is assumed refined where it is mined, except "
        "Myanmar, Tajikistan, Australia, Bolivia, Kyrgyzstan, Laos and Pakistan, whose concentrates go "
        "to China (the direction of their 2024 BACI exports)"
    )
    for r in REGIONS:
        sb_prov[r] = ("CRITMIN;CEPII-BACI;USGS-MCS2026", "assumption", sb_note)
    put_prod("antimony", "refine", {r: sb_ref[r] * YIELDS[("antimony", "refine")].value for r in REGIONS}, sb_prov)

    # ---------------------------------------------------------------------------------------- tungsten
    w_mine = prod[("tungsten", "mine")]
    w_raw = flows_raw[("tungsten", "mine")]
    # a region without mines that imports under 100 t W of concentrate is not taken to be a converter
    w_imp = w_raw.groupby("importer").quantity_t.sum()
    minor = {str(r) for r, v in w_imp.items() if v < 100.0 and w_mine[str(r)] <= 0}
    w_flows = reconcile_trade(w_raw[~w_raw.importer.isin(minor)], w_mine, {r: math.inf for r in REGIONS})
    trade_final[("tungsten", "mine")] = w_flows
    imp = w_flows.groupby("importer").quantity_t.sum()
    exp = w_flows.groupby("exporter").quantity_t.sum()
    w_app = fold_small({r: w_mine[r] + float(imp.get(r, 0.0)) - float(exp.get(r, 0.0)) for r in REGIONS})
    put_prod(
        "tungsten",
        "refine",
        {r: w_app[r] * YIELDS[("tungsten", "refine")].value for r in REGIONS},
        {
            r: (
                _cite("USGS-MCS2026", "CEPII-BACI", "CRITMIN"),
                "derived",
                f"no published split of APT output: apparent concentrate consumption = mine output "
                f"{w_mine[r]:,.0f} + observed imports {float(imp.get(r, 0.0)):,.0f} - observed exports "
                f"{float(exp.get(r, 0.0)):,.0f} t W "
                f"(BACI 2024; regions under 0.1% of the world folded into ROW); Roskill: China just under 80% of "
                f"primary tungsten output in 2016",
            )
            for r in REGIONS
        },
    )

    # ---------------------------------------------------------------------------------------- mine-stage trade
    # cobalt and nickel: now that refining is known, cap imports at use (refine input)
    for m in ("cobalt", "nickel"):
        y = YIELDS[(m, "refine")].value
        use_m = {r: prod[(m, "refine")][r] / y for r in REGIONS}
        f = reconcile_trade(flows_raw[(m, "mine")], prod[(m, "mine")], use_m)
        trade_final[(m, "mine")] = f

    # ---------------------------------------------------------------------------------------- consumption
    for m in MINERALS:
        stages = MINERALS[m]["stages"]
        eu = END_USE[m]
        last = stages[-1]
        for s in stages:
            shares = eu["shares"].get(s)
            if not shares:
                continue
            key0 = (m, s, shares[0].key)
            if key0 in consumption:
                continue
            # world consumption at s: output(s) - input to the next stage
            nxt = stages[stages.index(s) + 1] if s != last else None
            total = world(prod[(m, s)]) - (world(prod[(m, nxt)]) / YIELDS[(m, nxt)].value if nxt else 0.0)
            stock = 0.0
            if m == "cobalt":
                stock = co_surplus
            elif m == "nickel":
                stock = ni_refined - ni_usage
            demand_total = total - stock
            for sh in shares:
                proxy_name = proxy_for(m, sh.key)
                proxy, psrc, pbasis, pnote = PROXY[proxy_name]
                qty = demand_total * sh.value + (stock if sh.key == "other" else 0.0)
                key = (m, s, sh.key)
                consumption[key] = {r: qty * proxy.get(r, 0.0) for r in REGIONS}
                extra = ""
                if stock and sh.key == "other":
                    extra = f"; includes the 2024 market surplus (stock build) of {stock:,.0f} t"
                cons_prov[key] = (
                    _cite(*sh.source.split(";"), *psrc.split(";")),
                    "assumption" if "assumption" in (sh.basis, pbasis) else "derived",
                    f"world {s} consumption {demand_total:,.1f} t x end-use share {sh.value:g} ({sh.note}) x "
                    f"regional proxy '{proxy_name}' ({pnote}){extra}",
                )
                for r, v in proxy.items():
                    t.add(
                        "shares",
                        mineral=m,
                        stage=s,
                        kind="consumption_region",
                        group=sh.key,
                        key=r,
                        share=v,
                        low=None,
                        high=None,
                        source=psrc,
                        basis=pbasis,
                        note=f"proxy '{proxy_name}'",
                    )
            add_share_rows(m, s, "end_use", "", shares)
        # rare earths: 'other' at refine
        if m in REE:
            sh = eu["refine_other"]
            total = world(prod[(m, "refine")]) - world(prod[(m, "magnet")]) / YIELDS[(m, "magnet")].value
            proxy, psrc, pbasis, pnote = PROXY["other"]
            consumption[(m, "refine", "other")] = {r: total * proxy.get(r, 0.0) for r in REGIONS}
            cons_prov[(m, "refine", "other")] = (
                _cite(*sh.source.split(";"), *psrc.split(";")),
                "assumption",
                f"world refined output not used in magnets {total:,.1f} t ({sh.note}) x regional proxy 'other' "
                f"({pnote})",
            )
            for r, v in proxy.items():
                t.add(
                    "shares",
                    mineral=m,
                    stage="refine",
                    kind="consumption_region",
                    group="other",
                    key=r,
                    share=v,
                    low=None,
                    high=None,
                    source=psrc,
                    basis=pbasis,
                    note="proxy 'other'",
                )

    for (cm, cs, ck), q in consumption.items():
        source, basis, note = cons_prov[(cm, cs, ck)]
        for r in REGIONS:
            if q[r] > 0:
                t.add(
                    "consumption",
                    mineral=cm,
                    stage=cs,
                    region=r,
                    sector=ck,
                    quantity_t=q[r],
                    source=source,
                    basis=basis,
                    note=note,
                )

    # ---------------------------------------------------------------------------------------- trade rows
    for tm in TRADE_MAPS:
        f = trade_final[(tm.mineral, tm.stage)]
        fac_note = f"{tm.factor.value:.4g} t contained per t gross ({tm.factor.note})"
        if tm.classes:
            fac_note += "; " + "; ".join(f"{p.value:.4g} below {hi:g} USD/t ({p.note})" for lo, hi, p in tm.classes)
        if tm.mineral == "lithium":
            fac_note += f"; HS 282520 {LIOH_FACTOR.value:.4f} ({LIOH_FACTOR.note})"
        for frow in f.to_dict("records"):
            qty = float(frow["quantity_t"])
            raw = float(frow["raw_quantity_t"])
            if qty < 1.0:
                continue
            scaled = (
                ""
                if abs(qty - raw) <= 1e-6 * max(raw, 1.0)
                else (
                    f" Scaled from {raw:,.1f} t so that the exporter ships no more than it produces and the "
                    f"importer takes no more than it uses at this stage."
                )
            )
            t.add(
                "trade",
                mineral=tm.mineral,
                stage=tm.stage,
                exporter=frow["exporter"],
                importer=frow["importer"],
                quantity_t=qty,
                observed_t=raw,
                year=TRADE_YEAR,
                hs6=frow["hs6"],
                gross_t=float(frow["gross_t"]),
                value_kusd=float(frow["value_kusd"]),
                source=_cite("CEPII-BACI", "CRITMIN"),
                basis="derived",
                note=f"{tm.product}; gross -> contained: {fac_note}; {tm.note}.{scaled}",
            )
        for lo, hi, cf in ((None, None, tm.factor), *tm.classes):
            t.add(
                "content_factors",
                mineral=tm.mineral,
                stage=tm.stage,
                item=f"HS {'/'.join(map(str, tm.hs6))}"
                + (f" unit value {lo:g}-{hi:g} USD/t" if lo is not None else ""),
                factor=cf.value,
                low=cf.low,
                high=cf.high,
                unit="t contained / t gross",
                source=cf.source,
                basis=cf.basis,
                note=cf.note,
            )
    t.add(
        "content_factors",
        mineral="lithium",
        stage="refine",
        item="HS 282520 (LiOH.H2O)",
        factor=LIOH_FACTOR.value,
        low=LIOH_FACTOR.low,
        high=LIOH_FACTOR.high,
        unit="t Li / t gross",
        source=LIOH_FACTOR.source,
        basis=LIOH_FACTOR.basis,
        note=LIOH_FACTOR.note,
    )
    for m in REE:
        for kind, (nd, dy, tb, desc) in REO_TYPES.items():
            frac = {"ndpr": nd, "dy": dy, "tb": tb}[m]
            lo, hi = REO_RANGES[m]
            countries = sorted(c for c, k in REO_COUNTRY_TYPE.items() if k == kind) or ["all other countries"]
            t.add(
                "content_factors",
                mineral=m,
                stage="mine",
                item=f"REO distribution: {kind} ({', '.join(countries)})",
                factor=frac,
                low=frac * lo,
                high=frac * hi,
                unit="t oxide / t REO",
                source="CRITMIN;MIIT-2024" if kind == "china_blend" else "CRITMIN",
                basis="assumption",
                note=f"{desc}; {_REO_NOTE}",
            )
        t.add(
            "content_factors",
            mineral=m,
            stage="mine",
            item="oxide to element",
            factor=REO_ELEMENT[m],
            low=REO_ELEMENT[m],
            high=REO_ELEMENT[m],
            unit="t element / t oxide",
            source="STOICH",
            basis="derived",
            note="NdPr oxide taken as 75:25 Nd2O3:Pr6O11" if m == "ndpr" else "",
        )
    t.add(
        "content_factors",
        mineral="lithium",
        stage="mine",
        item="WMD Li2O to Li",
        factor=LI2O,
        low=LI2O,
        high=LI2O,
        unit="t Li / t Li2O",
        source="STOICH",
        basis="derived",
        note="",
    )

    # ---------------------------------------------------------------------------------------- stages, sectors
    for m, info in MINERALS.items():
        for i, s in enumerate(info["stages"]):
            yp = YIELDS.get((m, s))
            t.add(
                "stages",
                mineral=m,
                stage=s,
                order=i + 1,
                product=info["products"][i],
                **(
                    {"yield": yp.value, **yp.row()}
                    if yp
                    else {
                        "yield": None,
                        "low": None,
                        "high": None,
                        "source": "CRITMIN",
                        "basis": "assumption",
                        "note": "first stage (no yield)",
                    }
                ),
            )
            mode, fp = FREIGHT[(m, s)]
            t.add("freight", mineral=m, stage=s, mode=mode, gross_per_contained=fp.value, **fp.row())
        for k in SECTORS:
            st = END_USE[m]["sector_stage"][k]
            t.add(
                "sectors",
                mineral=m,
                sector=k,
                stage=st,
                source="CRITMIN",
                basis="assumption",
                note=f"{k} consumes {m} as {info['products'][info['stages'].index(st)]}",
            )
        t.add(
            "minerals",
            mineral=m,
            name=info["name"],
            quantity_unit=info["unit"],
            source="CRITMIN;STOICH",
            basis="derived",
            note=notes_extra.get(m, ""),
        )

    # ---------------------------------------------------------------------------------------- capacity
    for (m, s), q in sorted(prod.items()):
        u = UTILISATION[s]
        for r in REGIONS:
            if q[r] <= 0:
                continue
            cap = q[r] / u.value
            src_c, basis_c, note_c = u.source, "assumption", f"output / assumed utilisation {u.value:g} ({u.note})"
            if m == "gallium" and s == "mine":
                published = {"CHN": 1600.0, "JPN": 10.0, "RUS": 10.0}
                if r in published:
                    cap = max(published[r], q[r])
                    src_c, basis_c = "USGS-MCS2026-DR", "assumption"
                    note_c = (
                        (
                            "published primary low-purity capacity at end-2025 (USGS MCS2026), used for 2024; "
                            "ROW countries (Germany, Hungary, Kazakhstan, Korea, Ukraine) hold 100 t of idle "
                            "capacity"
                        )
                        if r == "CHN"
                        else "published capacity end-2025, used for 2024"
                    )
            if m == "gallium" and s == "refine":
                cap = q[r] * 340.0 / 320.0
                src_c, basis_c = "USGS-MCS2025-GA", "derived"
                note_c = (
                    "world high-purity capacity 340 t (2024) split like output (secondary capacity ~280 t not included)"
                )
            t.add(
                "capacity",
                mineral=m,
                stage=s,
                region=r,
                capacity_t=cap,
                low=q[r] / (u.high or 1.0) if basis_c == "assumption" and not (m == "gallium") else None,
                high=q[r] / (u.low or 1.0) if basis_c == "assumption" and not (m == "gallium") else None,
                source=src_c,
                basis=basis_c,
                note=note_c,
            )
    # idle gallium capacity in KOR (MCS2025) and ROW (MCS2026)
    t.add(
        "capacity",
        mineral="gallium",
        stage="mine",
        region="KOR",
        capacity_t=16.0,
        low=None,
        high=None,
        source="USGS-MCS2025-GA",
        basis="sourced",
        note="Republic of Korea primary capacity 16,000 kg/yr (MCS2025); no output in 2024 per MCS2026",
    )
    t.add(
        "capacity",
        mineral="gallium",
        stage="mine",
        region="ROW",
        capacity_t=84.0,
        low=None,
        high=None,
        source="USGS-MCS2026-DR",
        basis="derived",
        note="USGS 'other countries' capacity 100 t/yr (2025) less Korea's 16 t",
    )

    # ---------------------------------------------------------------------------------------- prices
    prices(t, trade_final, flows_raw)

    # ---------------------------------------------------------------------------------------- elasticities
    for m, info in MINERALS.items():
        for s in info["stages"]:
            if s == "mine" and m == "nickel":
                sr = NICKEL_MINE_SR
            elif s == "mine" and m in ("cobalt", "gallium", "germanium", *REE):
                sr = BYPRODUCT_MINE_SR
            else:
                sr = SUPPLY_SR[s]
            for horizon, p in (("short_run", sr), ("long_run", SUPPLY_LR[s])):
                t.add("elasticities", mineral=m, side="supply", key=s, horizon=horizon, value=p.value, **p.row())
        for k in SECTORS:
            sr_d = NICKEL_DEMAND_SR if m == "nickel" else DEMAND_SR[k]
            lr_d = NICKEL_DEMAND_LR if m == "nickel" else DEMAND_LR[k]
            for horizon, p in (("short_run", sr_d), ("long_run", lr_d)):
                t.add("elasticities", mineral=m, side="demand", key=k, horizon=horizon, value=p.value, **p.row())

    # ---------------------------------------------------------------------------------------- demand growth
    demand_growth(t, consumption)

    # ---------------------------------------------------------------------------------------- WMD check
    wmd_check(src, t)

    # ---------------------------------------------------------------------------------------- regions
    regions_table(t, prod)

    for cid, (citation, note) in CITATIONS.items():
        t.add(
            "sources",
            id=cid,
            citation=citation,
            source=cid,
            basis="assumption" if cid == "CRITMIN" else "sourced",
            note=note,
        )

    return write_all(t, out_dir)


def prices(
    t: Tables, trade: Mapping[tuple[str, str], pd.DataFrame], raw: Mapping[tuple[str, str], pd.DataFrame]
) -> None:
    """Base-year prices per (mineral, stage), USD per tonne of contained element."""

    def add(
        m: str,
        s: str,
        region: str,
        price: float,
        source: str,
        basis: str,
        note: str,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        t.add(
            "prices",
            mineral=m,
            stage=s,
            region=region,
            price_usd_per_t=price,
            low=low,
            high=high,
            source=source,
            basis=basis,
            note=note,
        )

    # rare earths (2024 no inside/outside-China gap: Fastmarkets 'Rotterdam ~= FOB China')
    ndpr_oxide = 53.0
    ree_refined = {
        "ndpr": (
            ndpr_oxide * 1000 / NDPR_OXIDE,
            _cite("FASTMARKETS-REE-2024", "USGS-MCS2025-REE", "LYNAS-2025-01", "STOICH"),
            "assumption",
            f"NdPr oxide 53 USD/kg (mean of 2024 observations: Fastmarkets FOB China 54 and 51, Lynas Q4 "
            f"51, USGS Nd oxide annual average 56) / {NDPR_OXIDE:.4f} t element per t oxide",
            48 * 1000 / NDPR_OXIDE,
            58 * 1000 / NDPR_OXIDE,
        ),
        "dy": (
            260.0 * 1000 / DY2O3,
            _cite("USGS-MCS2025-REE", "STOICH"),
            "derived",
            f"Dy oxide 99.5% 2024 annual average 260 USD/kg (Argus, USGS) / {DY2O3:.4f}",
            None,
            None,
        ),
        "tb": (
            810.0 * 1000 / TB4O7,
            _cite("USGS-MCS2025-REE", "STOICH"),
            "derived",
            f"Tb oxide 99.99% 2024 annual average 810 USD/kg (Argus, USGS) / {TB4O7:.4f}",
            None,
            None,
        ),
    }
    for m, (p, source, basis, note, lo, hi) in ree_refined.items():
        add(
            m,
            "refine",
            "*",
            p,
            source,
            basis,
            note + "; same in every region in 2024 (CIF Rotterdam ~= FOB China before the 2025 controls)",
            lo,
            hi,
        )
        mp = REE_MINE_PAYABLE
        add(
            m,
            "mine",
            "*",
            p * mp.value,
            _cite(source.split(";")[0], "CRITMIN"),
            "assumption",
            f"{mp.value:g} x refined price ({mp.note})",
            p * (mp.low or 0),
            p * (mp.high or 1),
        )
        mc = MAGNET_CONVERSION
        add(
            m,
            "magnet",
            "*",
            p + mc.value,
            _cite(source.split(";")[0], "CRITMIN"),
            "assumption",
            f"refined price + {mc.value:,.0f} USD/t ({mc.note})",
            p + (mc.low or 0),
            p + (mc.high or 0),
        )
    # lithium
    li_ref = 14000.0 / LI2CO3
    f = raw[("lithium", "refine")]
    carb_uv = float(f.value_kusd.sum() * 1000 / f.quantity_t.sum())
    add(
        "lithium",
        "refine",
        "*",
        li_ref,
        _cite("STATISTA-LI", "STOICH"),
        "derived",
        f"battery-grade lithium carbonate 2024 annual average 14,000 USD/t (secondary) / {LI2CO3:.4f}; BACI "
        f"2024 export unit value of lithium chemicals {carb_uv:,.0f} USD/t Li (cross-check)",
        10000.0 / LI2CO3,
        16000.0 / LI2CO3,
    )
    add(
        "lithium",
        "mine",
        "*",
        0.45 * li_ref,
        "CRITMIN",
        "assumption",
        "0.45 x refined price: value of lithium in spodumene concentrate and brine (conversion margin)",
        0.3 * li_ref,
        0.6 * li_ref,
    )
    # graphite: BACI 2024 unit values
    b = raw[("graphite", "mine")]
    g_uv = float(b.value_kusd.sum() * 1000 / b.gross_t.sum())
    add(
        "graphite",
        "mine",
        "*",
        g_uv,
        "CEPII-BACI",
        "derived",
        "BACI 2024 world export unit value of natural graphite concentrate (HS 250410/250490 below 1,500 USD/t, "
        "inter-regional flows); USGS US import unit value was 1,080 USD/t in 2023",
        0.7 * g_uv,
        1.5 * g_uv,
    )
    add(
        "graphite",
        "refine",
        "*",
        3500.0,
        _cite("CEPII-BACI", "CRITMIN"),
        "assumption",
        "battery-grade spherical graphite ~3,500 USD/t: China->US HS 250410 unit value 3,749 USD/t in 2024 "
        "(BACI); above 2 x the concentrate value so that the spheronisation margin is positive at yield 0.5",
        2500.0,
        5000.0,
    )
    # cobalt
    add(
        "cobalt",
        "refine",
        "*",
        26000.0,
        _cite("FASTMARKETS-CO-2024", "REUTERS-CO-2025", "CRITMIN"),
        "assumption",
        "2024 average between the Apr-2024 Rotterdam metal point (13.7 USD/lb = 30,200 USD/t) and the Feb-2025 "
        "low (22,000 USD/t)",
        22000.0,
        30200.0,
    )
    add(
        "cobalt",
        "mine",
        "*",
        7.1 * 2204.62,
        "FASTMARKETS-CO-2024",
        "assumption",
        "cobalt hydroxide payable 7.1 USD/lb contained Co (CIF China, 5 Apr 2024 point) used as the 2024 value",
        5.5 * 2204.62,
        8.0 * 2204.62,
    )
    # nickel
    add(
        "nickel",
        "refine",
        "*",
        16335.0,
        "WB-NI-2024",
        "assumption",
        "LME nickel monthly average Jul 2024 used as the 2024 annual value (World Bank Apr-2024 forecast ~17,000)",
        15000.0,
        18000.0,
    )
    n = trade[("nickel", "mine")]
    ni_uv = float(n.value_kusd.sum() * 1000 / n.raw_quantity_t.sum())
    add(
        "nickel",
        "mine",
        "*",
        ni_uv,
        _cite("CEPII-BACI", "CRITMIN"),
        "derived",
        "BACI 2024 export value of nickel ores and concentrates per tonne of contained Ni (content factors in "
        "content_factors.csv)",
        0.3 * 16335,
        0.8 * 16335,
    )
    # gallium: China vs outside China (export licensing since Aug 2023)
    ga_cn, ga_ex, hp = 270_000.0, 550_000.0, 1.5
    add(
        "gallium",
        "mine",
        "*",
        ga_ex,
        "FASTMARKETS-GA",
        "assumption",
        "Ga 99.99% in-warehouse Rotterdam: 500-600 USD/kg in Dec 2023, 'almost doubled' vs pre-control levels by "
        "Aug 2024; used as the 2024 level outside China",
        450_000.0,
        725_000.0,
    )
    add(
        "gallium",
        "mine",
        "CHN",
        ga_cn,
        "FASTMARKETS-GA",
        "assumption",
        "China domestic 4N gallium ~1,650-2,050 CNY/kg (2023-2025 observations) ~ 270 USD/kg",
        230_000.0,
        300_000.0,
    )
    add(
        "gallium",
        "refine",
        "*",
        ga_ex * hp,
        "CRITMIN",
        "assumption",
        f"high-purity (6N+) premium x{hp:g} on the 4N price outside China",
        ga_ex * 1.2,
        ga_ex * 2.5,
    )
    add(
        "gallium",
        "refine",
        "CHN",
        ga_cn * hp,
        "CRITMIN",
        "assumption",
        f"high-purity (6N+) premium x{hp:g} on the 4N China price",
        ga_cn * 1.2,
        ga_cn * 2.5,
    )
    # germanium
    ge_cn, ge_ex = 1_700_000.0, 2_100_000.0
    add(
        "germanium",
        "refine",
        "*",
        ge_ex,
        "GE-PRICES-2024",
        "assumption",
        "2024 average outside China: Argus 2,280 USD/kg (Aug 2024), ~2,600 (Oct), just over 1,000 at the start of 2023",
        1_500_000.0,
        2_600_000.0,
    )
    add(
        "germanium",
        "refine",
        "CHN",
        ge_cn,
        "GE-PRICES-2024",
        "assumption",
        "China ingot: record 13,250 CNY/kg (~1,826 USD/kg) in Jun 2024 after ~1,300 earlier; converged up to the "
        "US level by Oct 2024",
        1_300_000.0,
        2_600_000.0,
    )
    add(
        "germanium",
        "mine",
        "*",
        0.5 * ge_ex,
        "CRITMIN",
        "assumption",
        "0.5 x refined price (payable for germanium in concentrates and residues)",
        0.3 * ge_ex,
        0.7 * ge_ex,
    )
    add(
        "germanium",
        "mine",
        "CHN",
        0.5 * ge_cn,
        "CRITMIN",
        "assumption",
        "0.5 x China refined price",
        0.3 * ge_cn,
        0.7 * ge_cn,
    )
    # antimony
    sb = 25000.0
    add(
        "antimony",
        "refine",
        "*",
        sb,
        _cite("REUTERS-SB-2025", "CRITMIN"),
        "assumption",
        "2024 average of a price that rose ~250% to 39,750 USD/t (Rotterdam, 31 Dec 2024) from ~11,400 at the "
        "start of the year",
        12000.0,
        40000.0,
    )
    add(
        "antimony",
        "mine",
        "*",
        0.5 * sb,
        "CRITMIN",
        "assumption",
        "0.5 x refined price (concentrate payable)",
        0.35 * sb,
        0.7 * sb,
    )
    # tungsten
    apt_mtu = 400.0 / 1.18
    add(
        "tungsten",
        "refine",
        "*",
        apt_mtu / (10 * WO3) * 1000,
        _cite("REUTERS-W-2025", "STOICH", "CRITMIN"),
        "assumption",
        f"APT ~{apt_mtu:.0f} USD/mtu WO3 before the Feb-2025 controls (400 in mid-May 2025 was +18%), "
        f"used as the 2024 level; 1 mtu = 10 kg WO3 = {10 * WO3:.3f} kg W",
        300.0 / (10 * WO3) * 1000,
        400.0 / (10 * WO3) * 1000,
    )
    add(
        "tungsten",
        "mine",
        "*",
        265.0 / (10 * WO3) * 1000,
        _cite("METALNOMIST-W-2025", "STOICH"),
        "assumption",
        "concentrate Rotterdam 260-270 USD/dmtu WO3 in Jan 2025, used as the 2024 level",
        230.0 / (10 * WO3) * 1000,
        300.0 / (10 * WO3) * 1000,
    )


def demand_growth(t: Tables, consumption: Mapping[tuple[str, str, str], Mapping[str, float]]) -> None:
    """Sector growth rates per period: base rates (assumption) scaled per mineral to meet IEA totals.

    Each sector grows at ``lambda * base_rate``; ``lambda`` (one per mineral and period) is solved so that
    world demand (base-year consumption weights) reaches the IEA multiple. Scaling, unlike a uniform shift,
    keeps every sector's growth positive and the sectors' ranking.
    """
    for m in MINERALS:
        weights = {k: 0.0 for k in SECTORS}
        for (mm, _s, k), q in consumption.items():
            if mm == m:
                weights[k] += sum(q.values())
        total = sum(weights.values())
        w = {k: v / total for k, v in weights.items()}
        anchors = GROWTH_ANCHORS.get(m)
        periods = [(BASE_YEAR, 2030), (2030, HORIZON)]
        level = dict.fromkeys(SECTORS, 1.0)
        base = {k: BASE_GROWTH_OVERRIDE.get((m, k), BASE_GROWTH[k]) for k in SECTORS}
        if anchors:
            if 2030 not in anchors:
                periods_use = [(BASE_YEAR, HORIZON, anchors[HORIZON], 1.0)]
            else:
                periods_use = [(BASE_YEAR, 2030, anchors[2030], 1.0), (2030, HORIZON, anchors[HORIZON], anchors[2030])]
            for start, end, target, _prev in periods_use:
                n = end - start

                def total_at(
                    lam: float,
                    n: int = n,
                    w: dict[str, float] = w,
                    level: dict[str, float] = level,
                    base: dict[str, float] = base,
                ) -> float:
                    return sum(w[k] * level[k] * (1 + lam * base[k]) ** n for k in SECTORS)

                lo, hi = 0.0, 10.0
                for _ in range(200):
                    mid = (lo + hi) / 2
                    if total_at(mid) < target:
                        lo = mid
                    else:
                        hi = mid
                lam = (lo + hi) / 2
                for k in SECTORS:
                    rate = lam * base[k]
                    t.add(
                        "demand_growth",
                        mineral=m,
                        sector=k,
                        start_year=start,
                        end_year=end,
                        annual_growth=round(rate, 6),
                        low=round(rate - 0.03, 6),
                        high=round(rate + 0.03, 6),
                        source=_cite("IEA-STEPS-DEMAND", "CRITMIN"),
                        basis="derived",
                        note=f"base rate {base[k]:+.3f}/yr (assumption) x {lam:.3f}, the factor that makes world "
                        f"{m} demand reach {target:g} x 2024 in {end} (IEA anchor)",
                    )
                    level[k] *= (1 + rate) ** n
        else:
            for start, end in periods:
                for k in SECTORS:
                    rate = base[k]
                    t.add(
                        "demand_growth",
                        mineral=m,
                        sector=k,
                        start_year=start,
                        end_year=end,
                        annual_growth=rate,
                        low=round(rate - 0.03, 6),
                        high=round(rate + 0.03, 6),
                        source="CRITMIN",
                        basis="assumption",
                        note="no published demand outlook in the shared sources; base sector rate"
                        + (" (lead-acid battery alloys grow slowly)" if (m, k) in BASE_GROWTH_OVERRIDE else ""),
                    )


def wmd_check(src: Sources, t: Tables) -> None:
    """World Mining Data 2024 mine output, aggregated to model regions and converted to model units."""
    w = src.wmd[(src.wmd.year == BASE_YEAR) & ~src.wmd.country_iso3.isin(["DELETE", "R20"])]
    w = w[w.production.notna()]
    table_of = {
        "lithium": "lithium",
        "graphite": "graphite",
        "cobalt": "cobalt",
        "nickel": "nickel",
        "gallium": "gallium",
        "germanium": "germanium",
        "antimony": "antimony",
        "tungsten": "tungsten",
    }
    for m in MINERALS:
        key = "rare_earths" if m in REE else table_of[m]
        rows = w[w.mineral == key]
        by: dict[str, list[tuple[str, float, float]]] = {}
        for code_raw, value in zip(rows["country_iso3"].tolist(), rows["production"].tolist(), strict=True):
            code = str(code_raw)
            if m in REE:
                f = reo_factor(code, m)
            elif m == "lithium":
                f = LI2O
            else:
                f = 1.0
            by.setdefault(region_of(code), []).append((code, float(value), f))
        table = str(rows.wmd_table.iloc[0])
        for region in REGIONS:
            items = by.get(region, [])
            if not items:
                continue
            q = sum(v * f for _c, v, f in items)
            reported = sum(v for _c, v, _f in items)
            note = (
                "converted with the model's REO distribution factors (content_factors.csv)"
                if m in REE
                else (f"Li2O x {LI2O:.4f}" if m == "lithium" else "metric tonnes as reported")
            )
            t.add(
                "wmd_check",
                mineral=m,
                region=region,
                wmd_quantity_t=q,
                wmd_reported_t=reported,
                wmd_table=table,
                countries=" ".join(f"{c}" for c, v, _f in items if v > 0),
                source=_cite("WMD2026", "STOICH") if m in REE or m == "lithium" else "WMD2026",
                basis="derived" if (m in REE or m == "lithium" or region in ("EU", "ROW")) else "sourced",
                note=note + ("; the model's germanium output is taken from this table" if m == "germanium" else ""),
            )


def regions_table(t: Tables, prod: Quant) -> None:
    """regions.csv, with the reason each region is in the model."""
    reasons: dict[str, list[str]] = {r: [] for r in REGIONS}
    for (m, s), q in sorted(prod.items()):
        total = sum(q.values())
        for r in COUNTRY_REGIONS:
            share = q[r] / total if total else 0.0
            if share >= 0.05:
                reasons[r].append(f"{m}/{s} {share:.0%}")
    for r in COUNTRY_REGIONS:
        c = pycountry.countries.get(alpha_3=r)
        assert c is not None, r
        name = getattr(c, "common_name", None) or c.name
        why = []
        if reasons[r]:
            why.append("at least 5% of world output: " + ", ".join(reasons[r]))
        if r in CLUB_NAMED:
            why.append("named club member or ally: " + CLUB_NAMED[r])
        loc, lat, lon = LOCATIONS[r]
        t.add(
            "regions",
            code=r,
            name=name,
            kind="country",
            members="",
            location=loc,
            lat=lat,
            lon=lon,
            inclusion="; ".join(why),
            source=_cite("POLICIES", "CRITMIN") if r in CLUB_NAMED else "CRITMIN",
            basis="assumption",
            note="coordinates of the representative point (approximate)",
        )
    loc, lat, lon = LOCATIONS["EU"]
    t.add(
        "regions",
        code="EU",
        name="European Union",
        kind="aggregate",
        members=" ".join(EU27),
        location=loc,
        lat=lat,
        lon=lon,
        inclusion="the EU as one region (intra-EU trade is internal)",
        source=_cite("EU-MEMBERS", "CRITMIN"),
        basis="sourced",
        note="EU-27 members; coordinates approximate",
    )
    loc, lat, lon = LOCATIONS["ROW"]
    t.add(
        "regions",
        code="ROW",
        name="Rest of the world",
        kind="remainder",
        members="",
        location=loc,
        lat=lat,
        lon=lon,
        inclusion="every country not listed above",
        source="CRITMIN",
        basis="assumption",
        note="notional location for transport distance",
    )


COLUMNS: dict[str, list[str]] = {
    "sources": ["id", "citation", "source", "basis", "note"],
    "regions": ["code", "name", "kind", "members", "location", "lat", "lon", "inclusion", "source", "basis", "note"],
    "minerals": ["mineral", "name", "quantity_unit", "source", "basis", "note"],
    "stages": ["mineral", "stage", "order", "product", "yield", "low", "high", "source", "basis", "note"],
    "freight": ["mineral", "stage", "mode", "gross_per_contained", "low", "high", "source", "basis", "note"],
    "sectors": ["mineral", "sector", "stage", "source", "basis", "note"],
    "shares": ["mineral", "stage", "kind", "group", "key", "share", "low", "high", "source", "basis", "note"],
    "content_factors": ["mineral", "stage", "item", "factor", "low", "high", "unit", "source", "basis", "note"],
    "production": ["mineral", "stage", "region", "quantity_t", "source", "basis", "note"],
    "capacity": ["mineral", "stage", "region", "capacity_t", "low", "high", "source", "basis", "note"],
    "prices": ["mineral", "stage", "region", "price_usd_per_t", "low", "high", "source", "basis", "note"],
    "consumption": ["mineral", "stage", "region", "sector", "quantity_t", "source", "basis", "note"],
    "demand_growth": [
        "mineral",
        "sector",
        "start_year",
        "end_year",
        "annual_growth",
        "low",
        "high",
        "source",
        "basis",
        "note",
    ],
    "elasticities": ["mineral", "side", "key", "horizon", "value", "low", "high", "source", "basis", "note"],
    "trade": [
        "mineral",
        "stage",
        "exporter",
        "importer",
        "quantity_t",
        "observed_t",
        "year",
        "hs6",
        "gross_t",
        "value_kusd",
        "source",
        "basis",
        "note",
    ],
    "wmd_check": [
        "mineral",
        "region",
        "wmd_quantity_t",
        "wmd_reported_t",
        "wmd_table",
        "countries",
        "source",
        "basis",
        "note",
    ],
}


def write_all(t: Tables, out_dir: Path) -> dict[str, pd.DataFrame]:
    """Write every table and world.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames: dict[str, pd.DataFrame] = {}
    for name, cols in COLUMNS.items():
        df = t.frame(name, cols)
        frames[name] = df
        df.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.10g")
    meta = {
        "name": "default",
        "title": "critmin default world",
        "description": "Eleven critical minerals, base year 2024, built from USGS, IEA, INSG, Cobalt Institute, "
        "CEPII BACI and World Mining Data facts; every number names its source and basis.",
        "base_year": BASE_YEAR,
        "horizon": HORIZON,
        "units": {
            "quantity": "t/yr",
            "price": "USD/t",
            "distance": "km",
            "note": "tonnes of contained element per year (graphite: t natural graphite); USD per tonne of "
            "contained element",
        },
        "sectors": [{"code": k, "description": v} for k, v in SECTOR_INFO.items()],
        "files": {name: f"{name}.csv" for name in COLUMNS},
        "trade_unmapped": {f"{m}/{s}": why for (m, s), why in sorted(UNMAPPED_STAGES.items())},
        "transport": transport_params(),
    }
    with open(out_dir / "world.yaml", "w", encoding="utf-8") as fh:
        yaml.safe_dump(meta, fh, sort_keys=False, allow_unicode=True, width=110)
    return frames


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sources", type=Path, help="folder with the shared source tables")
    parser.add_argument("out", type=Path, help="output folder (the default world)")
    args = parser.parse_args(argv)
    build(args.sources, args.out)


if __name__ == "__main__":
    main()
