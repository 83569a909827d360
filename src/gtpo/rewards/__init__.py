"""Public name of the paper's rewards: `gtpo.rewards` is the module `gtpo.tasks.rewards` itself.

(A package rather than a rewards.py beside the library, so that git follows the old rewards.py
to gtpo/tasks/rewards.py.)"""

import sys

from gtpo.tasks import rewards

sys.modules[__name__] = rewards
