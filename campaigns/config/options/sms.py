"""What the options of every SMS channel share; each provider's own are in
:mod:`.aliyun` (Aliyun Dysms), :mod:`.tencent` (Tencent Cloud SMS) and :mod:`.twilio`.

China providers (Aliyun, Tencent) send approved templates only: the provider prefixes the
approved signature as 【SignName】 and the approved template text is the whole body, so the
opt-out sentence (CHANNELS.md §8: 「拒收请回复R」, some platforms 「回T退订」) must be part of the
approved marketing template. The options let marketing sends use their own signature and
template and, for templates that take the opt-out sentence as a variable, name that variable
(``opt_out_param``). Twilio sends free text: marketing bodies get the brand prefix and the
opt-out sentence appended unless the body already carries it.

Template parameters come from the rendered template: its ``json`` part, when present, is the
parameter object (Aliyun ``TemplateParam``) or list (Tencent ``TemplateParamSet``); otherwise
``params`` names, per template variable, the rendered part (``sms``, ``txt``...) or message
field (``recipient``, ``customer_external_id``, ``send_key``) that fills it.
"""

from __future__ import annotations

from datetime import timedelta

from campaigns.config.base import Duration, RecipientField, StrictModel

#: Default opt-out sentence of China marketing SMS (CHANNELS.md §8).
CHINA_OPT_OUT_TEXT = "拒收请回复R"


class SmsOptions(StrictModel):
    """What every SMS channel takes: the field it sends to and the request timeout."""

    recipient: RecipientField = "phone"
    timeout: Duration = timedelta(seconds=10)
