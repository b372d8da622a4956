"""Surgery: where removed units sit in the tensors
(:mod:`.positions`), cutting them out (:mod:`.physical`, with optimizer
state, :mod:`.optim_state`), holding them at zero (:mod:`.dead`,
:mod:`.mask`), and the check that a cut computes what the mask does
(:mod:`.verify`)."""
