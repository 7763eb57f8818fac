"""Campaign and transactional message templates: Jinja2 in a bounded sandbox
(:mod:`.sandbox`), rendered per contact (:mod:`.render`) with CSS inlined and a text
part made from the HTML (:mod:`.html`), built into MIME message bytes
(:mod:`.mime`), and checked before a campaign is scheduled (:mod:`.check`)."""
