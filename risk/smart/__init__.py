"""The SMART App Launch 2.2 client, shared by every page of the service that signs a user in through an EHR's
authorization server: the clinician app (:mod:`smart_app`) and the coordinator worklist
(:mod:`risk.population.web`); the simulated EHR of the demo (:mod:`risk.demo`) uses its discovery.

* :mod:`risk.smart.discovery`: ``.well-known/smart-configuration``, validated and cached.
* :mod:`risk.smart.pkce`: PKCE S256 pairs and ``state`` values, compared in constant time.
* :mod:`risk.smart.launch`: the authorization request, code exchange and refresh, the id_token, ``appContext``.
* :mod:`risk.smart.identity`: ``fhirUser`` parsing.
* :mod:`risk.smart.scopes`: SMART v1/v2 scope sets and what they allow.
* :mod:`risk.smart.page_security`: CSP and security headers, cookie policy, CSRF and same-origin checks.
* :mod:`risk.smart.errors`: the errors of a launch, each with the page a user sees.

It lives in ``risk`` because the dependency runs one way (ARCHITECTURE.md: ``smart_app`` uses ``risk``).
"""
