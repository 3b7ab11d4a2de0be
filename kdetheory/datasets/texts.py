"""A default English text for real-attention experiments (original prose, public domain).

:func:`kdetheory.datasets.minilm_attention` runs all-MiniLM-L6-v2 on this text when no text
is given, and :data:`PASSAGES` cuts it into paragraph-sized passages for sentence-embedding
experiments (the end-to-end claim). It is written for this package (about 2,800 words, 3,249 word pieces, hence 7
windows of at most 512 tokens), so it is identical on every Python installation. The essays are deliberately varied in topic and register, so that attention heads
see names, numbers, lists, dialogue and long sentences.
"""
from __future__ import annotations

__all__ = ["DEFAULT_TEXT", "PASSAGES", "passages"]

_RIVER = """\
The river begins as a thin line of cold water under a field of stones, and for the first
few miles nobody would think to call it a river at all. It slips between tussocks of grass,
disappears under a farm track through a concrete pipe, and comes out the other side a little
wider and a little louder. Sheep drink from it. A heron stands in it for an hour at a time,
perfectly still, and then strikes so quickly that the only evidence is a ring of ripples
spreading towards the bank. By the time the water reaches the first village it has gathered
a dozen small streams, each with its own name on the old maps, and it has begun to carve
a proper valley with steep sides of clay and alder roots.

The village grew up around a mill. In the eighteenth century the miller diverted part of the
flow into a stone channel, the leat, which ran along the contour of the hill and dropped onto
a wooden wheel twelve feet across. The wheel turned two pairs of stones, and the stones turned
the grain of the whole parish into flour. When the railway came, cheaper flour arrived from
the large steam mills in the port towns, and the wheel turned more and more slowly until, one
wet winter, it stopped. The building became a store for potatoes, then a workshop for a man
who repaired bicycles, and finally a house with large windows and a garden that runs down to
the water. The leat is still there, dry and full of nettles, and children use it as a secret
path between the church and the school.

Below the village the valley opens out. The river meanders across a flat meadow, swinging
from one side to the other in wide loops, and each loop is slowly moving downstream. On the
outside of every bend the current is fast and eats into the bank; on the inside it is slow
and drops the sand and gravel it was carrying. Over centuries the loops migrate across the
whole floor of the valley, and now and then, during a flood, the river cuts straight across
the neck of a loop and abandons it. The old channel becomes a curved pond, an oxbow lake,
which fills slowly with reeds and then with willow, until only a damp crescent in the grass
remains to show where the water used to run.
"""

_CLOCKS = """\
For most of history, time was measured by the sun. Noon was the moment when shadows were
shortest, and every town kept its own noon, a few minutes earlier or later than its
neighbours depending on how far east or west it lay. Nobody minded, because nobody travelled
fast enough to notice. A coach that took two days to cross a county could hardly be late by
the difference between two church clocks.

The railways changed that. A timetable is a promise that a train will leave one place and
arrive at another at stated times, and the promise means nothing if the two places disagree
about what time it is. Railway companies began to keep a single standard time along their
lines, usually the time of the capital, and station clocks sometimes carried two minute
hands: one for the local time and one for the railway. Within a few decades the railway time
had won, and whole countries adopted a single time zone. In 1884 an international conference
agreed on a prime meridian, and the world was divided, at least on paper, into twenty-four
zones each one hour wide.

Precise clocks mattered even more at sea. A navigator can find latitude from the height of
the sun or of the pole star, but longitude depends on time: the earth turns fifteen degrees
every hour, so a ship that knows the time at its home port and observes local noon can work
out how far east or west it has sailed. An error of four minutes in the clock is an error of
one degree of longitude, which near the equator is about sixty nautical miles. The problem
was to build a clock that kept time on a rolling deck, through heat and cold and damp, for
months on end. The solution, after many years of work by a carpenter turned clockmaker, was a
series of marine chronometers that lost or gained only a few seconds a day. Later versions
were made in thousands, and by the end of the nineteenth century no ocean-going ship sailed
without two or three of them, kept in padded boxes and wound at the same hour every morning.

Today the second is defined by counting the oscillations of a caesium atom, and the clocks
that keep international time would drift by less than a second over the age of the universe.
Yet most people still glance at the sky when they step outside, and judge the hour, quite
accurately, by the length of the shadows and the colour of the light.
"""

_BREAD = """\
A loaf of bread needs only four things: flour, water, salt and yeast. What turns them into
bread is time. When flour and water are mixed, two proteins in the flour bind with the water
and with each other to form gluten, a network of long elastic strands. Kneading stretches and
aligns the strands, and the dough changes from a shaggy, sticky mass into a smooth ball that
springs back when pressed. Meanwhile the yeast feeds on the sugars released from the starch,
and it produces carbon dioxide and a little alcohol. The gas collects in tiny pockets held
by the gluten, and the dough rises.

Bakers argue endlessly about the details. Some knead for fifteen minutes; others barely knead
at all and let a long, slow rise in the cold do the work instead. Some use commercial yeast
from a packet; others keep a sourdough starter, a jar of flour and water colonised by wild
yeasts and bacteria, which they feed every day like a pet. The bacteria make lactic and
acetic acids, which give sourdough its tang and help the bread keep for longer. A starter can
live for decades. There are bakeries that claim their starter is older than the building.

The oven finishes the story. In the first minutes the gas in the dough expands and the yeast
makes a last burst of carbon dioxide before the heat kills it; the loaf swells, a movement
bakers call oven spring. Then the outside dries and browns. The browning is a set of
reactions between sugars and amino acids that produce hundreds of different molecules, and
it is these that give crust its smell. A good crust crackles as the loaf cools on the rack,
the sound of the hard outer shell contracting faster than the soft crumb inside. Most bakers
will tell you that the hardest part of making bread is waiting for it to cool before you cut
it, and most of them admit that they rarely manage to wait.
"""

_DIALOGUE = """\
"You are counting the wrong thing," said the old surveyor, putting down his cup. "Everyone
counts the cars. Count the people waiting at the crossing instead."

The student frowned. "But the cars are what we are trying to slow down."

"The cars are what you can see. The people are what the street is for. Stand here on Monday
at eight, and again at four, and write down how long each person waits before they cross,
and whether they give up and cross somewhere else. Then do the same on Saturday."

"That is going to be a very long list."

"It is going to be a very useful list. A list of cars tells you how many vehicles the road
can carry. A list of waiting people tells you what the road costs the people who live beside
it. Nobody has ever counted that here. You will be the first."

She came back a week later with three notebooks. The average wait at the busiest crossing was
forty-one seconds, but that number hid the real story. Most people waited less than twenty
seconds; a few waited more than two minutes, and almost all of those were old, or pushing a
pram, or walking with small children. Eleven people in one morning had given up and walked to
the next junction, a detour of four hundred metres. The surveyor read the notebooks twice,
very slowly, and then he telephoned the council.
"""

_SAMPLING = """\
Suppose you want to know the average of a very long list of numbers, too long to add up in
the time you have. The simplest thing to do is to pick some entries at random, add up only
those, and scale the result. If every entry is equally likely to be picked, the scaled sum is
correct on average, and its error shrinks like one over the square root of the number of
entries you picked. Pick a hundred and the error is about a tenth of the spread of the list;
pick ten thousand and it is about a hundredth.

The trouble starts when a few entries are enormous and the rest are tiny. A uniform sample
will usually miss the enormous ones, and then the estimate is far too small; occasionally it
will catch one, and then the estimate is far too large. The average is still right, but any
single estimate is useless. The cure is to pick entries with probability proportional to
their size, or to an estimate of their size, and to divide each picked entry by the
probability of picking it. Large entries are then picked often and each counts for little;
small entries are picked rarely and each counts for a lot; and the variance can be made much
smaller than with uniform sampling. Much of the art of fast approximate computation lies in
finding cheap estimates of these sizes, for example by hashing similar items into the same
bucket so that the large contributions can be found without looking at everything.

The same idea applies to products of matrices. To multiply a wide matrix by a tall one, you
can sample a few columns of the first together with the matching rows of the second, rescale
them, and add up their outer products. If the sampling probabilities follow the lengths of
the columns and rows, the error, measured in the right norm, depends on how many columns you
keep and on a quantity called the stable rank, which counts how many directions really matter
in each matrix. A matrix with a handful of dominant directions has a small stable rank and
can be approximated with few samples, whatever its size.
"""

_WEATHER = """\
The shipping forecast is read four times a day, and its language has hardly changed in a
century. The sea areas are named in a fixed order, clockwise around the islands, and for each
one the reader gives the wind direction and strength, the weather, and the visibility. Wind
is measured on the Beaufort scale, from force zero, when smoke rises vertically and the sea is
like a mirror, to force twelve, a hurricane, when the air is filled with foam and spray and
visibility is very seriously affected. Between them lie the moderate breezes of force four,
when small branches move and the sea is covered with white horses, and the gales of force
eight, when twigs break off trees and walking into the wind is difficult.

A low-pressure system crossing the ocean has a recognisable sequence. First the high, thin
cloud, mare's tails, spreads from the west, and a halo may appear around the sun. The
pressure begins to fall. The cloud thickens and lowers, the wind backs towards the south and
strengthens, and rain arrives, light at first and then steady. When the warm front passes
the rain eases to drizzle, the air feels damp and mild, and visibility is poor. Then the
cold front comes through, often with a sharp squall and a sudden heavy shower; the wind veers
to the west or north-west, the pressure rises, the cloud breaks, and the air turns clear and
cold. Fishermen and sailors who have never read a textbook of meteorology can describe every
stage of this, because their lives have depended on recognising it.

Forecasts today are made by computers that divide the atmosphere into millions of boxes and
step the equations of fluid motion forward a few minutes at a time. They are remarkably good
for the next few days and steadily worse after that, because small errors in the starting
state grow until they swamp the forecast. To estimate how much to trust a forecast, the
centres run the model many times from slightly different starting states and see how far the
runs spread apart. When they agree, the forecast is confident; when they scatter, the honest
answer is that nobody knows, and the forecaster says so.
"""

_GARDEN = """\
The allotments lie on a slope behind the railway embankment, forty plots in five rows, each
ten metres by twenty-five. The waiting list is eight years long. Every plot is different:
one is a neat grid of raised beds with gravel paths and labelled rows of onions; the next is
a jungle of raspberries, rhubarb and self-sown poppies, with a shed built from old doors and a
bathtub that collects rainwater from the roof. On a summer evening there might be a dozen
people at work, and a surprising amount of what happens is conversation. Seeds are swapped,
tools are borrowed and not returned, and advice is given freely, whether or not anybody asked
for it.

The calendar is set by frost. Nothing tender goes out before the middle of May, whatever the
weather in April, because everybody remembers the year when a clear night in the second week
of May blackened every potato leaf on the hill. Beans and courgettes are started on
windowsills and carried up in trays, and tomatoes wait in the greenhouses until June. By
August there is too much of everything. Courgettes left for two days become marrows; runner
beans go stringy if they are not picked every other day; and people leave bags of surplus on
the bench by the gate with a handwritten sign that says, simply, help yourself.

In the autumn the plots are cleared, manure is spread, and the soil is left rough for the
frost to break down. The last job of the year is to clean and oil the tools and hang them on
their nails in the shed. Then the gardeners go home and spend the winter reading seed
catalogues, making plans that are always more ambitious than the summer will allow, and
waiting for the days to grow longer again.
"""

_LIBRARY = """\
The library was founded in 1853 by a subscription of two hundred townspeople, each of whom
paid one guinea a year for the right to borrow three books at a time. The first catalogue,
printed on eight pages, listed just over a thousand titles: sermons, travels, histories,
natural philosophy, a shelf of novels that the committee debated for a whole evening, and a
complete set of an encyclopaedia in twenty volumes that cost more than all the rest together.
The librarian was paid forty pounds a year and was expected to keep the reading room warm,
the newspapers in order and the members quiet.

Over the following century the collection grew to fifty thousand volumes, the subscription
was abolished, and the building was extended twice, once with a reading room under a glass
dome and once with a plain brick wing for the children's library. Each change brought a new
catalogue. The handwritten ledgers gave way to cards in long wooden drawers, filed by author,
title and subject, and the cards gave way to a computer terminal that sat, for some years,
beside the drawers it was meant to replace, because many readers trusted the cards more. In
the end the drawers were sold to a furniture dealer, and one of them now holds cutlery in a
restaurant across the square.

What has not changed is the question people bring to the desk. They rarely ask for a book by
its title. They describe what they half remember: a blue cover, a story about a lighthouse,
something their grandmother read to them, a chapter about how bridges are built. The
librarian's skill is to turn these fragments into a search, to guess which of a thousand
possible books is the one in the reader's mind, and to be right more often than chance would
allow. No catalogue has ever fully replaced that skill, and the best librarians say they are
still learning it.
"""

#: The default text: eight short essays, about 2,800 words in all.
DEFAULT_TEXT = "\n".join(
    [_RIVER, _CLOCKS, _BREAD, _DIALOGUE, _SAMPLING, _WEATHER, _GARDEN, _LIBRARY]
)


#: Paragraphs shorter than this many words are joined to the next paragraph of the same essay.
_MIN_PASSAGE_WORDS = 60


def passages(min_words=_MIN_PASSAGE_WORDS):
    """The essays of :data:`DEFAULT_TEXT` cut into passages of whole paragraphs.

    Parameters
    ----------
    min_words : int >= 1, default 60
        A paragraph shorter than this is joined to the following paragraphs of the same essay
        until the passage has ``min_words`` words (a short last piece joins the one before).

    Returns
    -------
    tuple of str
        Passages in text order, each within one essay; with the default, 24 passages of 63 to 174 words
        (74 to 196 word pieces of all-MiniLM-L6-v2's tokenizer). Passages of one essay share a topic,
        so their pairwise similarities have structure worth preserving.
    """
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words: got {min_words!r}; pass an int >= 1.")
    out = []
    for essay in (_RIVER, _CLOCKS, _BREAD, _DIALOGUE, _SAMPLING, _WEATHER, _GARDEN, _LIBRARY):
        pieces, current = [], []
        for paragraph in essay.strip().split("\n\n"):
            current.append(paragraph.strip())
            if sum(len(p.split()) for p in current) >= min_words:
                pieces.append("\n\n".join(current))
                current = []
        if current:  # a short tail joins the previous passage of the essay
            if pieces:
                pieces[-1] = "\n\n".join([pieces[-1], *current])
            else:
                pieces.append("\n\n".join(current))
        out.extend(pieces)
    return tuple(out)


#: :func:`passages` at its default: whole-paragraph passages of the eight essays.
PASSAGES = passages()
