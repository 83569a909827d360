"""System prompts: the paper's (reasoning and answer tags) and one for the community's convention
(the final answer in \\boxed{}), with the question as the user turn."""

SYSTEM_PROMPT = (
    "You are a helpful assistant for solving math problems. Given a question, first think step by step "
    "between <reasoning> and </reasoning>. Then, give the final answer between <answer> and </answer>."
)
BOXED_SYSTEM_PROMPT = (
    "You are a helpful assistant for solving math problems. Work through the problem step by step, "
    "then write the final answer, and nothing else, inside \\boxed{}."
)
SYSTEM_PROMPTS = {"tags": SYSTEM_PROMPT, "boxed": BOXED_SYSTEM_PROMPT}


def make_prompt(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Conversational prompt in TRL's format: a system turn and the question as the user turn."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": question},
    ]


def with_system_prompt(prompt: list[dict[str, str]], system_prompt: str) -> list[dict[str, str]]:
    """The same conversation with its system turn replaced (or added) by `system_prompt`."""
    turns = [turn for turn in prompt if turn.get("role") != "system"]
    return [{"role": "system", "content": system_prompt}, *turns]
