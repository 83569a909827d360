"""The paper's prompt: one system prompt, the question as the user turn."""

SYSTEM_PROMPT = (
    "You are a helpful assistant for solving math problems. Given a question, first think step by step "
    "between <reasoning> and </reasoning>. Then, give the final answer between <answer> and </answer>."
)


def make_prompt(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Conversational prompt in TRL's format: a system turn and the question as the user turn."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": question},
    ]
