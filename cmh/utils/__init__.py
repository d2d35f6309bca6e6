"""cmh.utils: small shared utilities.

    cli           the argument parser every entry point uses
    progress      progress bars only where someone watches
    devices       --device auto | cpu | cuda
    torch_ops     binarize (±1, never 0) and autocast_off, used by losses and encoding
    errors        UserError: the one exception whose message is for the user
    atomic_io     files replaced atomically: a temporary beside the target, synced, renamed
    folder_lock   one writer per folder (flock), refused at once; shared files waited for
    interrupts    Ctrl-C / SIGTERM as one clean stop, held while files are written
    entry_points  running train.py / evaluate.py / retrieve.py / data.py in a child process
"""
