"""The samples' workflows, served alone for the workflow crash test."""

from bayou import App, SiloSettings
from samples.approval import Approval
from samples.batch import Batch

app = App([Approval, Batch], SiloSettings(snapshot_every=5))
