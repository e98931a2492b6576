# Generic "compile these C/asm files, link one program" makefile, driven by
# testbins/realworld/build. Object files go to $(OBJDIR) (one directory per program
# and variant); header dependencies are tracked with -MMD.
#
#   make -f cprog.mk SRCDIR=... SRCS="rel/a.c rel/b.c" OBJDIR=... OUT=... \
#        CFLAGS="-O2 -g" CPPFLAGS="-D..." LDFLAGS=... LDLIBS=...
CC ?= gcc
obj_of = $(OBJDIR)/$(subst /,__,$(1)).o
OBJS := $(foreach s,$(SRCS),$(call obj_of,$(s)))

$(OUT): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@.tmp $(OBJS) $(LDLIBS)
	mv -f $@.tmp $@

define objrule
$(call obj_of,$(1)): $(SRCDIR)/$(1)
	@mkdir -p $(OBJDIR)
	$$(CC) $$(CPPFLAGS) $$(CFLAGS) -MMD -MP -c -o $$@ $$<
endef
$(foreach s,$(SRCS),$(eval $(call objrule,$(s))))

-include $(OBJS:.o=.d)
