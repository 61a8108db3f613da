"""A cheap guard on what the avatar says: a piece of a reply that breaks character is never spoken.

A small model sometimes forgets whom it plays ("I'm an AI designed to assist with programming tasks.",
"Hello! I'm Sarah, a creative writing assistant.") or says its instructions back ("Facts about you: ...").
The turn checks each piece before it is spoken: at the first piece that breaks character the reply ends
there (the model is stopped); if little was said yet (a greeting), the avatar says a line of its own too.
"""

from __future__ import annotations

import re

# What a persona never says about itself (lower case), in English and Ukrainian; and the system prompt's words.
_OUT_OF_CHARACTER = re.compile(
    r"\b(?:as an ai|i'?m an ai|i am an ai|an ai (?:language )?model|ai model|language model|large language model"
    r"|artificial intelligence|(?:ai|virtual|digital|helpful) assistant|i'?m an assistant|i am an assistant"
    r"|chatbot|chat bot|openai|chatgpt|qwen|alibaba cloud|smollm|hugging ?face"
    r"|facts about you|use only these|what you say about yourself|only these facts|always answer in"
    r"|when talking about yourself|speak as yourself"
    r"|i(?:'m| am) (?:just |only |a |an |only a |just a )*(?:robot|bot|machine|computer program)"
    r"|i (?:don't|do not) have (?:personal |any )?(?:opinions|preferences|feelings|emotions|experiences|a body))\b"
    r"|штучн\w* інтелект\w*|мовн\w* модел\w*|асистент\w*|чат-бот\w*|я (?:лише |просто )?(?:комп'ютерна )?програма\b",
    re.IGNORECASE,
)
# "My name is Olena and ...", "Call me Alex."; "I'm Sarah, ..." (after "I am", a capitalized name then
# punctuation or a surname: "I'm Happy to help" does not count).
_SELF_NAME = re.compile(
    r"\b(?:[Mm]y name is|[Cc]all me)\s+([A-Z][a-z]+)|\b(?:I am|I'm|I’m)\s+([A-Z][a-z]+)(?=\s*[,.!?;]|\s+[A-Z][a-z]+)"
)


def breaks_character(text: str, persona_name: str) -> str:
    """Why `text` is not the persona speaking ("" when it is)."""
    found = _OUT_OF_CHARACTER.search(text)
    if found:
        return found.group(0)
    names = {part.lower() for part in re.findall(r"\w+", persona_name)}
    for m in _SELF_NAME.finditer(text):
        if (m.group(1) or m.group(2)).lower() not in names:
            return m.group(0)
    return ""


def persona_line(persona_name: str, language: str) -> str:
    """What the avatar says when the model's reply broke character before anything was said."""
    if language.lower().split("-")[0] == "uk":
        return "Краще спитайте мене про мою роботу: про це я розповім охоче."
    return f"I'm {persona_name}. Ask me about my work: that I'm glad to talk about."
