"""Text-to-image GAN trained from cached text vectors (StackGAN stage-I grade, 64×64, matching-aware).

    conditioning.py  conditioning augmentation layer (text vector -> c, μ, log σ²)
    losses.py        pure loss functions: bce / hinge / magp families, KL term
    models.py        StackGAN-I generator and discriminator (encoder + conditional head)
    ta80.py          the course baseline (--arch ta80): dense G/D, GRU text encoder on raw captions
    config.py        GanConfig (every option, defaults, presets) and all option checks
    data.py          embedding cache in memory, step-keyed batch sampler, tf.data pipeline
    image_cache.py   uint8 image cache beside the embedding cache (<dataset>-<hash>.images64.h5)
    trainer.py       GanTrainer (keras.Model with train_step) and load_generator for generate.py
    loop.py          the training loop: run folder, checkpoints, samples, progress lines, NaN guard
    run_dir.py       numbered run folders, config.json, train.log, sample grids, TensorBoard writes
"""
