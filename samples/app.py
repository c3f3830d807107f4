"""The app that hosts every sample actor: ``bayou silo --app samples.app:app``."""

from bayou import App
from samples.approval import Approval
from samples.batch import Batch
from samples.chat import Chat
from samples.chat_actor import ChatActor
from samples.counter import Counter
from samples.loyalty import Loyalty

app = App([Counter, Loyalty, Chat, ChatActor, Approval, Batch])
