package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"loadwatch/internal/ota"
)

// userCmd manages the dashboard's users (people who sign in to the web
// dashboard besides the admin credential). It works while serve runs.
type userCmd struct {
	Add    userAddCmd    `cmd:"" help:"Add a dashboard user (password prompted twice, or read from stdin with --password-stdin)."`
	Passwd userPasswdCmd `cmd:"" help:"Change a dashboard user's password."`
	List   userListCmd   `cmd:"" help:"List dashboard users."`
	Delete userDeleteCmd `cmd:"" help:"Delete a dashboard user (their open sessions end at their expiry or a server restart)."`
}

type passwordFlags struct {
	PasswordStdin bool `name:"password-stdin" help:"Read the password from the first line of stdin instead of prompting."`
}

// password reads the new password from in (first line) or the terminal.
func (f passwordFlags) password(in io.Reader) (string, error) {
	if f.PasswordStdin {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	pw, err := ota.ReadPassword("Password: ")
	if err != nil {
		return "", fmt.Errorf("%w (or use --password-stdin)", err)
	}
	again, err := ota.ReadPassword("Password (again): ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the passwords differ")
	}
	return pw, nil
}

type userAddCmd struct {
	registryFlags
	passwordFlags
	Name string `arg:"" help:"User name: 1-64 characters without spaces or ':'."`
}

func (c *userAddCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdin, os.Stdout) }

func (c *userAddCmd) run(ctx context.Context, in io.Reader, w io.Writer) error {
	pw, err := c.password(in)
	if err != nil {
		return err
	}
	r, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.AddUser(ctx, c.Name, pw); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "user %s added; sign in at the dashboard's /login\n", c.Name)
	return err
}

type userPasswdCmd struct {
	registryFlags
	passwordFlags
	Name string `arg:"" help:"User name."`
}

func (c *userPasswdCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdin, os.Stdout) }

func (c *userPasswdCmd) run(ctx context.Context, in io.Reader, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	pw, err := c.password(in)
	if err != nil {
		return err
	}
	if err := r.SetPassword(ctx, c.Name, pw); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "password of %s changed\n", c.Name)
	return err
}

type userListCmd struct {
	registryFlags
}

func (c *userListCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *userListCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	us, err := r.ListUsers(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, us)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\n", u.Name, u.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

type userDeleteCmd struct {
	registryFlags
	Name string `arg:"" help:"User name."`
}

func (c *userDeleteCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *userDeleteCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.DeleteUser(ctx, c.Name); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "user %s deleted\n", c.Name)
	return err
}
