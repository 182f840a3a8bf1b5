"""The Function app: one DFApp composing one blueprint per file from functions/.

    func start            # with Core Tools, where they can be installed (README: what it needs)
    stylebatch serve      # the same app, loaded by the real Python worker's code, host-less
"""

import azure.durable_functions as df
import azure.functions as func

from functions import activities, api, orchestrator, trigger, web
from shared.redact import install_log_redaction

install_log_redaction()  # no SAS, key or token in any log record of this process

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (trigger.bp, orchestrator.bp, activities.bp, api.bp, web.bp):
    app.register_functions(blueprint)
