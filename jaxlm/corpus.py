"""A deterministic generator of TinyStories-like children's stories (the project ships no third-party text).

Each story follows the simple arc small LMs learn quickly (an opening "Once upon a time, there was a
little ... named ...", a setting, a problem, dialogue, a resolution, a moral), filled from word lists
generous enough to give thousands of distinct words: names (a few non-ASCII: Zoë, José, Björn), animals,
things, foods, places, compound town names, adjectives, verbs; digits in ages, counts and times; now and
then an emoji. Story i depends only on (seed, i), so a shorter run is a prefix of a longer one.
Importable without JAX. Command line: `python -m jaxlm.corpus --out FILE (--bytes N | --stories N) [--seed S]`.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

from tokenizer.textio import atomic_write

EOT = "<|endoftext|>"


def _words(s: str) -> list[str]:
    return s.split()


def _lines(s: str) -> list[str]:
    return [line.strip() for line in s.strip().splitlines() if line.strip()]


GIRLS = _words("""
Lily Mia Emma Ava Sophie Lucy Ella Grace Chloe Ruby Anna Sara Lila Nora Maya Rosie Daisy Molly Poppy Hannah
Olivia Amelia Isla Freya Alice Evie Ivy Hazel Violet Willow Luna Stella Clara Ellie Matilda Phoebe Layla Zara
Esme Iris Florence Harriet Imogen Jasmine Kitty Lola Martha Nina Pippa Rose Tilly Una Vera Wendy Yasmin Amy
Bella Cora Dora Elsie Fiona Gemma Heidi Jenny Kate Laura Megan Nell Penny Rita Susie Tara Tessa Polly Mabel
Beth Jade Leah Mina Naomi Priya Rania Sana Tia Uma Yara Aisha Fatima Mei Hana Keiko Leilani Maria Lucia
Elena Sofia Greta Ingrid Astrid Mila Talia Hattie Winnie Dottie Josie Millie Sadie Bonnie Betty Marnie Peggy
""") + ["Zoë", "Chloé", "Amélie", "Renée", "Léa", "Inés", "Maëlle", "Søs", "Åsa", "Noémie", "Zofia", "Małgosia"]
BOYS = _words("""
Tom Ben Sam Max Leo Jack Finn Oliver Harry Noah Theo Oscar Alfie Archie Charlie George Henry Jacob Louis
Toby Arthur Felix Hugo Ivan Jonah Kai Liam Milo Ned Owen Pete Rory Seth Tim Ollie Zack Ezra Billy Danny
Eddie Frank Gus Hank Jim Kit Larry Mark Nick Ralph Sid Ted Victor Will Alex Adam Ali Amir Ravi Sunil Kenji
Hiro Tariq Omar Yusuf Marco Luca Paolo Diego Pablo Mateo Carlos Lars Nils Erik Otto Hans Pierre Remy Simon
Dylan Evan Freddie Gabe Harvey Isaac Jamie Kevin Lenny Mikey Nate Percy Quentin Reggie Stanley Tobias Vince
Wally Walter Barney Benny Bobby Buddy Cody Dexter Elliot Jasper Leon Monty Rufus Teddy Wilbur Woody Arlo
""") + ["José", "Björn", "Jürgen", "Søren", "Andrés", "Joël", "Ángel", "Ramón", "Noël", "Łukasz", "Håkon"]
ANIMALS = _words("""
cat dog rabbit bunny bird duck frog mouse bear fox owl pig cow horse sheep goat lamb puppy kitten chick
squirrel hedgehog turtle tortoise snail butterfly bee ladybug ant caterpillar worm fish whale dolphin
seal penguin elephant giraffe lion tiger zebra monkey hippo rhino kangaroo koala panda deer moose wolf
raccoon badger otter beaver mole hamster parrot robin sparrow crow swan goose hen rooster donkey pony
unicorn dragon dinosaur crab octopus starfish shark jellyfish lizard snake spider beetle firefly dragonfly
bat camel llama alpaca chipmunk skunk porcupine flamingo peacock pelican toucan walrus polar-bear cub
gorilla cheetah leopard yak bison ferret gerbil guinea-pig pigeon magpie woodpecker stork heron seagull
""")
OBJECTS = _words("""
ball kite doll teddy book hat scarf shoe boot sock ribbon bow balloon drum whistle crayon pencil paintbrush
blanket pillow lamp clock key box basket bucket spade shovel rope ladder wagon bike scooter sled boat train
truck car bus plane rocket robot puzzle block marble yo-yo top jar cup bowl plate spoon fork bottle bell
flag map compass lantern flashlight umbrella coat mitten glove backpack bag purse wallet coin button zipper
necklace bracelet ring crown wand cape mask tent hammock swing slide sandbox fence gate door window chair
table bed sofa rug mirror brush comb toothbrush towel soap bucket watering-can flowerpot seed shell pebble
stone feather leaf stick acorn pinecone twig nest egg ornament candle present card letter envelope stamp
sticker badge medal trophy camera telescope binoculars magnet kettle teapot oven fridge sink bathtub
guitar piano violin flute trumpet harmonica xylophone tambourine radio television computer phone tablet
notebook diary journal calendar poster picture painting sculpture vase basketball football baseball
skateboard surfboard paddle oar net fishing-rod tricycle jigsaw kaleidoscope spinning-top snow-globe
""")
FOODS = _words("""
apple banana orange pear peach plum cherry grape strawberry blueberry raspberry melon watermelon lemon
carrot pea bean potato tomato cucumber pumpkin corn broccoli cabbage lettuce onion mushroom cookie cake
cupcake muffin pie tart pancake waffle sandwich pizza noodle soup stew bread roll bun biscuit cracker
cheese yogurt honey jam butter egg sausage candy lollipop chocolate popcorn pretzel donut pudding jelly
icecream smoothie lemonade milkshake cereal porridge oatmeal rice dumpling taco burrito salad nut
""")
PLACES = _words("""
park garden forest woods meadow field farm barn river lake pond beach sea ocean island mountain hill valley
cave desert jungle swamp town village city school library museum zoo market shop bakery playground castle
tower bridge station harbor lighthouse orchard vineyard greenhouse kitchen attic basement backyard
treehouse classroom hospital circus fair festival carnival aquarium stadium cinema theater palace temple
""")
# compound town names: many distinct words that read like storybook places
TOWN_HEADS = _words("""
Willow Maple Oak Pine Elm Birch Cedar Apple Cherry Honey Sunny Misty Rainy Windy Snowy Green Blue Red Golden
Silver Bright Little Old Clover Daisy Rose Fern Moss Thistle Bramble Hazel Berry Cotton Pebble Stone Brook
Meadow Fox Badger Owl Robin Wren Lark Otter Mill Bell Candle Button Puddle Acorn Pumpkin Marigold Tulip
""")
TOWN_TAILS = _words("""
brook wood ton ville field dale vale shire ford bury stead wick moor hollow glen ridge bridge well haven
side mead hurst thorpe dell marsh cliff burg view
""")
ADJECTIVES = _words("""
happy sad big small tiny little huge giant tall short long round square soft hard warm cold hot cool wet
dry clean dirty shiny bright dark light heavy old new young fast slow quiet loud kind gentle brave shy
silly funny clever smart wise curious sleepy hungry thirsty grumpy cheerful friendly lonely proud careful
careless busy lazy strong weak fluffy fuzzy furry smooth rough sticky sparkly colorful pretty beautiful
lovely ugly strange special magic secret hidden sweet sour spicy salty yummy tasty crunchy creamy juicy
fresh stale noisy bumpy wobbly squishy slippery prickly spotty stripy curly straight wild tame polite rude
honest helpful playful naughty jolly merry lucky unlucky bold calm nervous excited scared worried surprised
amazed tired bored patient eager gentle generous greedy selfish thoughtful cozy snug chilly frosty stormy
sunny cloudy rainy windy foggy muddy sandy rocky grassy leafy sunny dusty rusty golden silver wooden
plastic paper glass woolly velvet tidy messy sleepy spooky twinkly glittery gigantic enormous miniature
ancient modern famous ordinary marvelous wonderful terrible horrible fantastic splendid delightful
""")
TRAITS = _words("""
happy little small tiny big kind gentle brave shy silly funny clever smart wise curious sleepy hungry grumpy
cheerful friendly lonely proud careful busy playful jolly lucky bold calm nervous excited eager generous
thoughtful fluffy fuzzy furry spotty stripy curly young polite honest helpful quiet noisy sweet chatty
""")
TREE_ADJ = _words("big old tall shady green leafy huge twisty apple cherry")
SCENERY = _lines("""
The sun was shining and the birds were singing.
The sky was {color} and full of fluffy clouds.
The wind was blowing the {color} leaves around.
Soft snow covered the rooftops and the gardens.
The flowers in the meadow were {color} and {adj}.
Little bees buzzed from flower to flower.
The grass was wet with morning dew.
The river sparkled in the warm sunshine.
Crickets chirped in the tall grass.
The moon was round and bright above the hills.
Puddles shone on the path after the rain.
The trees whispered in the gentle breeze.
""")
COLORS = _words("""
red blue green yellow orange purple pink brown black white gray golden silver violet turquoise
""")
FEELINGS = _words("""
happy sad glad upset angry cross scared afraid nervous excited proud sorry lonely calm brave shy grateful
thankful surprised worried hopeful cheerful jealous embarrassed curious confused relieved delighted
""")
FAMILY = _words("mom dad grandma grandpa sister brother aunt uncle nana papa")
FAMILY_PRON = {"mom": "she", "grandma": "she", "sister": "she", "aunt": "she", "nana": "she"}
TIMES = _lines("""
morning
afternoon
evening
sunny day
rainy day
snowy morning
windy afternoon
summer day
autumn morning
spring afternoon
winter evening
Saturday
Sunday morning
""")
# (base, past, -ing) activities a character loves to do
ACTIVITIES = [
    ("play outside", "played outside", "playing outside"), ("run in the grass", "ran in the grass", "running in the grass"),
    ("jump in puddles", "jumped in puddles", "jumping in puddles"), ("sing songs", "sang songs", "singing songs"),
    ("dance", "danced", "dancing"), ("draw pictures", "drew pictures", "drawing pictures"),
    ("paint", "painted", "painting"), ("read books", "read books", "reading books"),
    ("climb trees", "climbed trees", "climbing trees"), ("swim in the lake", "swam in the lake", "swimming in the lake"),
    ("ride a bike", "rode a bike", "riding a bike"), ("fly a kite", "flew a kite", "flying a kite"),
    ("build sandcastles", "built sandcastles", "building sandcastles"), ("bake cookies", "baked cookies", "baking cookies"),
    ("pick flowers", "picked flowers", "picking flowers"), ("catch bugs", "caught bugs", "catching bugs"),
    ("look at the stars", "looked at the stars", "looking at the stars"), ("play hide and seek", "played hide and seek",
                                                                           "playing hide and seek"),
    ("kick a ball", "kicked a ball", "kicking a ball"), ("skip rope", "skipped rope", "skipping rope"),
    ("splash in the water", "splashed in the water", "splashing in the water"), ("tell jokes", "told jokes", "telling jokes"),
    ("collect shells", "collected shells", "collecting shells"), ("plant seeds", "planted seeds", "planting seeds"),
    ("play the drum", "played the drum", "playing the drum"), ("roll down hills", "rolled down hills",
                                                            "rolling down hills"),
    ("watch the clouds", "watched the clouds", "watching the clouds"), ("make music", "made music", "making music"),
    ("write stories", "wrote stories", "writing stories"), ("explore", "explored", "exploring"),
    ("chase butterflies", "chased butterflies", "chasing butterflies"), ("count stars", "counted stars", "counting stars"),
    ("build towers", "built towers", "building towers"), ("help in the garden", "helped in the garden",
                                                           "helping in the garden"),
    ("feed the ducks", "fed the ducks", "feeding the ducks"), ("blow bubbles", "blew bubbles", "blowing bubbles"),
    ("play with blocks", "played with blocks", "playing with blocks"), ("go fishing", "went fishing", "going fishing"),
    ("ice skate", "ice skated", "ice skating"), ("roller skate", "roller skated", "roller skating"),
    ("make paper boats", "made paper boats", "making paper boats"), ("dig for treasure", "dug for treasure",
                                                                   "digging for treasure"),
]
# things seen on the way: a long list for vocabulary breadth
SIGHTS = _words("""
waterfall windmill scarecrow haystack tractor puddle rainbow snowman bonfire campfire fountain statue
mailbox lamppost signpost footpath stream pond cottage chimney weathervane wheelbarrow greenhouse beehive
anthill molehill mushroom toadstool sunflower daisy tulip rose lily dandelion clover thistle fern moss ivy
bramble hedge pinetree oak willow birch maple cactus seashell sandcastle rowboat sailboat canoe ferry
steamboat caravan hot-air-balloon airplane helicopter firetruck ambulance tractor digger crane bulldozer
carousel ferris-wheel bandstand gazebo pavilion bakery toyshop bookshop post-office clocktower
cathedral chapel farmhouse stable pigsty henhouse kennel birdhouse treehouse igloo wigwam hut cabin
""")
FURNITURE = _words("bed table chair sofa rug door box basket cupboard shelf desk bench bush tree rock fence")
SCARY = _lines("""
the dark
the thunder
the big dog next door
the deep water
the tall slide
the loud vacuum cleaner
the shadows on the wall
the old creaky stairs
the wind at night
the noisy train
the buzzing bees
the high diving board
""")
STUCK_IN = _lines("""
a tall tree
a thorny bush
a deep hole
a muddy puddle
a tangled net
an old fence
a narrow pipe
a high shelf
a sticky web
a pile of leaves
""")
MATERIALS = _words("blocks sticks sand snow boxes pillows stones leaves cardboard clay paper shells")
BUILDS = _words("tower castle house bridge fort boat rocket nest wall tunnel")
INGREDIENTS = _words("flour sugar milk butter eggs honey oats berries cocoa raisins nuts cinnamon")
BAKED = _words("cake pie muffins cookies bread pancakes cupcakes tart biscuits")
OH_NO = ["Oh no!", "Oh dear!", "Uh-oh!", "Oh my!", "Oh, no!"]
WOW = ["Wow!", "Look!", "Hooray!", "Yay!", "Oh, wow!"]
EMOJI = ["🌈", "🐻", "🎉", "⭐", "🌞", "🍪", "🐶", "🐱", "🦊", "🌸", "🎈", "🚀", "❤️", "😊", "🍎"]
MORALS = _lines("""
sharing makes everyone happy
it is good to help your friends
being kind is better than winning
you should never give up
it is okay to be scared, but it is good to be brave
telling the truth is always best
friends can fix anything together
you should always say sorry when you make a mistake
everyone is good at something
patience brings good things
a little help goes a long way
it is fun to try new things
listening to others is important
working together makes hard jobs easy
taking care of nature is everyone's job
""")
LESSONS = {  # MORALS index -> "From that day on, X always ..." endings that fit it
    0: ["shared {poss} toys with {poss} friends", "shared {poss} snacks"],
    1: ["helped anyone who needed it", "looked out for small animals"],
    2: ["played fair and helped {poss} friends", "stopped to help others"],
    3: ["tried again when things were hard", "kept trying until {pron} got it right"],
    4: ["was brave, even when {pron} felt a little scared"],
    5: ["told the truth", "said sorry when {pron} made a mistake"],
    9: ["waited {poss} turn", "was patient"],
    10: ["said thank you", "asked for help when {pron} needed it"],
    11: ["looked for new places to explore", "took {poss} {object} on every trip"],
}
IRREGULAR_PLURALS = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "goose": "geese", "wolf": "wolves",
                     "leaf": "leaves", "child": "children", "deer": "deer", "moose": "moose", "bison": "bison",
                     "octopus": "octopuses", "cactus": "cacti", "knife": "knives", "loaf": "loaves",
                     "peach": "peaches", "sandwich": "sandwiches", "box": "boxes", "fox": "foxes",
                     "bus": "buses", "dress": "dresses", "glass": "glasses", "potato": "potatoes",
                     "tomato": "tomatoes", "mango": "mangoes", "binoculars": "binoculars", "cheese": "cheese",
                     "rice": "rice", "honey": "honey", "butter": "butter", "icecream": "ice creams"}
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    vowel = (word[:1].lower() in "aeiou" and not word.startswith(("uni", "use", "eu"))) or word.startswith("hon")
    return ("an " if vowel else "a ") + word


def _human(word: str) -> str:
    return word.replace("-", " ")


@dataclass(frozen=True)
class Character:
    name: str
    kind: str  # "girl", "boy" or an animal
    pron: str  # he / she
    obj: str  # him / her
    poss: str  # his / her


class _Story:
    """One story's random choices and sentence builders (a fresh instance per story)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.emoji_left = 1 if rng.random() < 0.12 else 0

    def pick(self, xs):
        return self.rng.choice(xs)

    def character(self, avoid: str = "") -> Character:
        girl = self.rng.random() < 0.5
        while True:
            name = self.pick(GIRLS if girl else BOYS)
            if name != avoid:
                break
        kind = ("girl" if girl else "boy") if self.rng.random() < 0.5 else _human(self.pick(ANIMALS))
        return Character(name, kind, "she" if girl else "he", "her" if girl else "him", "her" if girl else "his")

    def town(self) -> str:
        return self.pick(TOWN_HEADS) + self.pick(TOWN_TAILS)

    def count(self, lo=2, hi=12) -> str:
        n = self.rng.randint(lo, hi)
        return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) and self.rng.random() < 0.5 else str(n)

    def maybe_emoji(self, s: str) -> str:
        if self.emoji_left and self.rng.random() < 0.5:
            self.emoji_left = 0
            return s + " " + self.pick(EMOJI)
        return s

    def say(self, who: Character, words: str, verb: str = "said") -> str:
        words = self.maybe_emoji(words)
        if self.rng.random() < 0.5:
            if words.endswith("."):
                words = words[:-1] + ","
            return f'"{words}" {verb} {who.name}.'
        return f'{who.name} {verb}, "{words}"'

    # ---- parts of the story --------------------------------------------------------------------------

    def opening(self, hero: Character) -> str:
        adj = self.pick(TRAITS)
        return self.pick([
            f"Once upon a time, there was a little {adj} {hero.kind} named {hero.name}.",
            f"Once upon a time, in a town called {self.town()}, there lived {article(adj)} {hero.kind} "
            f"named {hero.name}.",
            f"Once upon a time, there was {article(adj)} {hero.kind}. {hero.pron.capitalize()} was called "
            f"{hero.name}.",
            f"One day, {article(adj)} {hero.kind} named {hero.name} woke up early.",
            f"There was once {article(adj)} {hero.kind} named {hero.name} who lived near the "
            f"{self.pick(PLACES)}.",
        ])

    def setting(self, hero: Character, thing: str) -> str:
        act = self.pick(ACTIVITIES)
        colour = self.pick(COLORS)
        s = [self.pick([
            f"{hero.name} loved to {act[0]} every day.",
            f"{hero.pron.capitalize()} liked {act[2]} more than anything.",
            f"Every {self.pick(TIMES)}, {hero.name} {act[1]} with {hero.poss} {self.pick(FAMILY)}.",
        ])]
        if self.rng.random() < 0.6:
            s.append(self.pick([
                f"{hero.pron.capitalize()} was {self.rng.randint(3, 9)} years old.",
                f"{hero.pron.capitalize()} had {article(colour)} {_human(thing)} that {hero.pron} loved very much.",
                f"{hero.name} lived in {article(self.pick(ADJECTIVES))} house in {self.town()} with "
                f"{hero.poss} {self.pick(FAMILY)}.",
                f"{hero.poss.capitalize()} best friend was {article(_human(self.pick(ANIMALS)))} called "
                f"{self.pick(GIRLS + BOYS)}.",
            ]))
        if self.rng.random() < 0.3:
            food = self.pick(FOODS)
            s.append(f"{hero.poss.capitalize()} favorite food was {plural(food)}.")
        if self.rng.random() < 0.5:
            s.append(self.pick(SCENERY).format(color=self.pick(COLORS), adj=self.pick(ADJECTIVES)))
        return " ".join(s)

    def lost_thing(self, hero, friend, thing):
        place = self.pick(PLACES)
        spot, under, behind = self.rng.sample(FURNITURE, 3)
        return [
            f"One {self.pick(TIMES)}, {hero.name} could not find {hero.poss} {_human(thing)}. "
            f"{hero.pron.capitalize()} looked under the {under} and behind the {behind}, but it was not there.",
            self.say(hero, f"{self.pick(OH_NO)} Where is my {_human(thing)}?", "cried"),
            f"{friend.name} the {friend.kind} came to help. "
            + self.say(friend, f"Let's look in the {place}!"),
            f"They looked and looked for {self.count(2, 30)} minutes. At last, they found the {_human(thing)} "
            f"next to {article(spot)} in the {place}. {hero.name} was so {self.pick(['happy', 'glad', 'relieved'])}.",
            self.say(hero, f"Thank you, {friend.name}! You are a good friend."),
        ], 10

    def sharing(self, hero, friend, thing):
        food = self.pick(FOODS)
        n = self.rng.randint(2, 12)
        return [
            f"One day, {hero.name} had {n} {plural(food)}. {friend.name} the {friend.kind} had none, and "
            f"{friend.pron} looked very {self.pick(['sad', 'hungry', 'lonely'])}.",
            self.say(friend, "Can I have one, please?", "asked"),
            f"At first, {hero.name} did not want to share. {hero.pron.capitalize()} wanted all {n} "
            f"{plural(food)} for {hero.obj}self.",
            f"Then {hero.pron} saw {friend.name}'s {self.pick(['sad face', 'empty hands', 'teary eyes'])}. "
            f"{hero.name} gave {friend.obj} {n // 2} {plural(food) if n // 2 != 1 else food}.",
            self.say(friend, "Thank you! You are so kind!"),
            f"They ate together under {article(self.pick(TREE_ADJ))} tree and laughed. Sharing felt "
            f"{self.pick(['good', 'wonderful', 'warm', 'nice'])}.",
        ], 0

    def fear(self, hero, friend, thing):
        scary = self.pick(SCARY)
        fam = self.pick(FAMILY)
        return [
            f"But {hero.name} had a problem. {hero.pron.capitalize()} was scared of {scary}.",
            self.say(hero, "I don't like it. It makes me feel small.", "whispered"),
            f"{hero.poss.capitalize()} {fam} sat down next to {hero.obj}. "
            f'"Everyone is scared sometimes," {FAMILY_PRON.get(fam, "he")} said. "Let\'s be brave together."',
            f"{hero.name} took a deep breath and counted to {self.count(3, 10)}. {hero.pron.capitalize()} "
            f"held {hero.poss} {_human(thing)} tight.",
            f"Slowly, {scary} did not seem so scary anymore. {hero.name} felt {self.pick(['brave', 'proud', 'strong'])}.",
            self.say(hero, "I did it! I am not scared now!", "shouted"),
        ], 4

    def rescue(self, hero, friend, thing):
        animal = _human(self.pick(ANIMALS))
        trap = self.pick(STUCK_IN)
        return [
            f"One {self.pick(TIMES)}, {hero.name} went to the {self.pick(PLACES)} with {friend.name}. "
            f"Suddenly, they heard a small cry. {article(animal).capitalize()} was stuck in {trap}!",
            self.say(friend, f"{self.pick(OH_NO)} The poor {animal} needs help!"),
            f"{hero.name} thought hard. Then {hero.pron} had an idea. {hero.pron.capitalize()} used "
            f"{hero.poss} {_human(thing)} to reach the little {animal}.",
            f"It took {self.count(2, 9)} tries, but at last the {animal} was free. It was {self.pick(FEELINGS)} "
            f"and {self.pick(['thankful', 'happy', 'safe'])}.",
            self.say(hero, f"There you go, little {animal}. Be careful next time!"),
        ], 1

    def build(self, hero, friend, thing):
        mat, what = self.pick(MATERIALS), self.pick(BUILDS)
        falls = self.rng.randint(2, 5)
        return [
            f"One {self.pick(TIMES)}, {hero.name} wanted to build a {what} out of {mat}. {hero.pron.capitalize()} "
            f"worked very hard.",
            f"But the {what} fell down! {hero.name} tried again, and it fell down again. It fell down {falls} times.",
            self.say(hero, f"{self.pick(OH_NO)} I will never build a good {what}.", "sighed"),
            f"{friend.name} came over and smiled. " + self.say(friend, "Let's try together. We can make the "
                                                                      "bottom wider."),
            f"They worked together for {self.count(2, 12)} minutes. This time the {what} stood tall and strong. "
            f"It was the best {what} in {self.town()}!",
        ], 3

    def baking(self, hero, friend, thing):
        baked = self.pick(BAKED)
        ing = self.rng.sample(INGREDIENTS, 3)
        fam = self.pick(FAMILY)
        return [
            f"One {self.pick(TIMES)}, {hero.name} and {hero.poss} {fam} decided to bake {baked}.",
            f"They needed {self.rng.randint(1, 4)} cups of {ing[0]}, {self.rng.randint(2, 6)} spoons of {ing[1]} "
            f"and a little {ing[2]}.",
            f"{hero.name} wanted to put in everything at once. " + self.say(hero, "Can we go faster?", "asked"),
            f'"Good things take time," said {hero.poss} {fam}. "We must wait {self.rng.randint(10, 45)} minutes."',
            f"{hero.name} waited and waited. When the {baked} came out of the oven, they smelled "
            f"{self.pick(['sweet', 'wonderful', 'yummy', 'delicious'])}. {hero.pron.capitalize()} shared them "
            f"with {friend.name}.",
        ], 9

    def race(self, hero, friend, thing):
        place = self.pick(PLACES)
        return [
            f"One {self.pick(TIMES)}, there was a big race at the {place}. {self.count(3, 12).capitalize()} "
            f"friends came to run.",
            f"{hero.name} ran very fast. {hero.pron.capitalize()} was in front! But then {hero.pron} saw "
            f"{friend.name} fall down and hurt {friend.poss} knee.",
            f"{hero.name} stopped running. " + self.say(hero, f"Are you okay, {friend.name}? Let me help you.",
                                                         "asked"),
            f"{hero.pron.capitalize()} helped {friend.name} get up, and they walked to the end together. They did "
            f"not win the race.",
            f"But everyone clapped and cheered for them. {hero.name} felt {self.pick(['proud', 'happy', 'warm inside'])}.",
        ], 2

    def sorry(self, hero, friend, thing):
        return [
            f"One day, {hero.name} was playing with {friend.name}'s {_human(thing)}. {hero.pron.capitalize()} "
            f"was not careful, and it broke!",
            f"{hero.name} was scared. {hero.pron.capitalize()} hid the broken {_human(thing)} under the "
            f"{self.pick(FURNITURE)}.",
            f"Later, {friend.name} looked everywhere for it. " + self.say(friend, f"Have you seen my "
                                                                              f"{_human(thing)}?", "asked"),
            f"{hero.name} felt bad inside. {hero.pron.capitalize()} took a deep breath and told the truth. "
            + self.say(hero, "I broke it. I am sorry."),
            f"{friend.name} was {self.pick(['sad', 'upset', 'surprised'])} at first, but then {friend.pron} smiled. "
            + self.say(friend, "Thank you for telling me. We can fix it together."),
        ], 5

    def trip(self, hero, friend, thing):
        place = self.pick(PLACES)
        a1, a2 = self.rng.sample(ANIMALS, 2)
        n1, n2 = self.rng.randint(2, 12), self.rng.randint(2, 12)
        return [
            f"One {self.pick(TIMES)}, {hero.name} and {friend.name} went on a trip to the {place} near "
            f"{self.town()}.",
            f"On the way they passed {article(_human(self.pick(SIGHTS)))} and {article(_human(self.pick(SIGHTS)))}.",
            f"They saw {n1} {_human(plural(a1))} and {n2} {_human(plural(a2))}. {hero.name} counted them all. "
            f"That made {n1 + n2} animals!",
            self.say(friend, f"{self.pick(WOW)} Look at that {self.pick(ADJECTIVES)} {_human(a1)}!"),
            f"Then the sky became {self.pick(['dark', 'gray', 'cloudy'])}, and it started to rain. They did not "
            f"have an umbrella.",
            f"{hero.name} had an idea. They ran under a big {self.pick(['tree', 'rock', 'bridge', 'roof'])} and "
            f"waited. Soon the sun came out again, and they saw a {self.pick(['big', 'bright', 'beautiful'])} rainbow.",
        ], 11

    def moral(self, hero: Character, thing: str, moral_idx: int) -> str:
        lesson = self.pick(LESSONS[moral_idx]).format(poss=hero.poss, pron=hero.pron, family=self.pick(FAMILY),
                                           object=_human(thing))
        end = self.pick([
            f"From that day on, {hero.name} always {lesson}.",
            f"The moral of the story is: {MORALS[moral_idx]}.",
            f"{hero.name} learned that {MORALS[moral_idx]}.",
            f"And from then on, {hero.name} and {hero.poss} friends were {self.pick(['happy', 'glad', 'cheerful'])} every day.",
        ])
        return self.maybe_emoji(end) if self.emoji_left else end

    def story(self) -> str:
        hero = self.character()
        friend = self.character(avoid=hero.name)
        thing = self.pick(OBJECTS)
        plot = self.pick([self.lost_thing, self.sharing, self.fear, self.rescue, self.build, self.baking,
                          self.race, self.sorry, self.trip])
        middle, moral_idx = plot(hero, friend, thing)
        paragraphs = [self.opening(hero) + " " + self.setting(hero, thing)]
        para: list[str] = []
        for sentence in middle:  # dialogue often starts a new line, as in TinyStories
            if sentence.startswith('"') and para and self.rng.random() < 0.5:
                paragraphs.append(" ".join(para))
                para = []
            para.append(sentence)
        paragraphs.append(" ".join(para))
        paragraphs.append(self.moral(hero, thing, moral_idx))
        return "\n\n".join(paragraphs) if self.rng.random() < 0.5 else "\n".join(paragraphs)


def generate_story(index: int, seed: int = 0) -> str:
    """Story number `index` of the stream for `seed` (independent of how many are generated)."""
    return _Story(random.Random(seed * 1_000_003 + index)).story()


def generate_stories(num_stories: int, seed: int = 0) -> list[str]:
    """`num_stories` deterministic stories for `seed`."""
    return [generate_story(i, seed) for i in range(num_stories)]


def write_corpus(path: str | os.PathLike, num_bytes: int | None = None, *, num_stories: int | None = None,
                 seed: int = 0) -> int:
    """Write stories joined by `<|endoftext|>` until `num_bytes` (UTF-8) or `num_stories`; returns bytes written.

    Written to a temporary file and renamed, so a failure leaves no partial corpus.
    """
    if (num_bytes is None) == (num_stories is None):
        raise ValueError("give exactly one of num_bytes or num_stories")
    written = 0
    with atomic_write(path) as f:
        i = 0
        while (num_stories is None or i < num_stories) and (num_bytes is None or written < num_bytes):
            data = ((EOT if i else "") + generate_story(i, seed)).encode("utf-8")
            f.write(data)
            written += len(data)
            i += 1
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m jaxlm.corpus",
                                description="Write generated children's stories joined by <|endoftext|>.")
    p.add_argument("--out", required=True, help="output text file")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--bytes", type=int, help="stop once this many UTF-8 bytes are written")
    size.add_argument("--stories", type=int, help="number of stories")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = write_corpus(args.out, args.bytes, num_stories=args.stories, seed=args.seed)
    print(f"wrote {n:,} bytes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
