"""Text-to-image GAN trained from cached text vectors (64×64, conditioning augmentation, matching-aware D).

    conditioning.py  conditioning augmentation layer (text vector -> c, μ, log σ²)
    losses.py        pure loss functions: bce / hinge / magp families, KL term
    archs.py         the architecture registry: --arch name -> its module's ARCH (builders, preset, options, inputs)
    dfgan.py         the default arch: text fused into every G block (affine from [c, z]), D reads text at 8×8 and 4×4
    stackgan.py      StackGAN-I generator and discriminator (encoder + conditional head), --arch stackgan
    diffaugment.py   DiffAugment before D (translation, cutout; never colour)
    ema.py           EMA of the generator's weights (what samples, generate.py and evaluation use)
    negatives.py     hard mismatched captions mined in the cached embedding space
    exchanged.py     mismatched captions that are the image's own with two colour words exchanged
    ta80.py          the course baseline (--arch ta80): dense G/D, GRU text encoder on raw captions
    config.py        GanConfig (every option, defaults = the default run's recipe, presets) and all option checks
    config_versions.py  config.json versions and the migration of older run folders
    data.py          embedding cache in memory, step-keyed batch sampler, tf.data pipeline
    image_cache.py   uint8 image cache beside the embedding cache (<dataset>-<hash>.images64.h5)
    trainer.py       GanTrainer (keras.Model with train_step), build_trainer, what a checkpoint holds
    inference.py     load_generator and sampling for generate.py, the web server and evaluation (no training code)
    loop.py          the training loop in phases: prepare the run folder, build, restore, step and call the hooks
    hooks.py         the loop's side effects: progress line + TensorBoard, checkpoint + NaN guard, sample grids
    run_dir.py       numbered run folders, config.json, train.log, sample grids, TensorBoard writes
    strategy.py      tf.distribute: --strategy none | mirrored | multiworker, replica-aware step and data
    flops.py         FLOPs per layer and per training step from the layer shapes; the CPU's fp32 peak
"""
