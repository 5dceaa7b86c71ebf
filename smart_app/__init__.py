"""The SMART-on-FHIR app for clinicians (SMART App Launch 2.2), mounted under ``/app``.

EHR launch (``iss`` + ``launch``) and standalone launch (``launch/patient``) with PKCE S256, ``state``
tied to a server-side browser session, ``aud`` = ``iss``, v2 scopes (v1 accepted), tokens kept server-side
and refreshed before expiry. Pages are server-rendered Jinja2 templates usable inside an EHR iframe: the
patient overview, the nodule timeline, the explanation and the actions (write-back of a RiskAssessment and a
draft follow-up ServiceRequest). The app renders :class:`risk.domain.Assessment`; it never recomputes
clinical logic.

The SMART client (discovery, PKCE, the OAuth 2 flow, id_token, ``fhirUser``, scopes, page security) lives in
:mod:`risk.smart`, shared with the coordinator sign-in; this package is the app: :mod:`smart_app.store`
(server-side sessions); :mod:`smart_app.fhir` (the app's
FHIR access); :mod:`smart_app.assessing` (snapshot → assessment seam); :mod:`smart_app.views` and
:mod:`smart_app.charts` (what the pages show); :mod:`smart_app.routes` (the HTTP surface).
"""
